//! Admission on the gRPC server: a tower layer in front of every service that admits each
//! call through the node's [`Admission`] (rate per client address, requests in flight),
//! holds its ticket as long as the response body, applies the request timeout, and answers
//! refusals with their gRPC status. The limits themselves are `api::admission`'s.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::api::admission::{Admission, Admitted, Refusal, Ticket};

/// The gRPC side: a tower layer in front of every service of the server.
#[derive(Clone)]
pub struct GrpcAdmissionLayer {
    admission: Arc<Admission>,
}

impl GrpcAdmissionLayer {
    pub fn new(admission: Arc<Admission>) -> Self {
        GrpcAdmissionLayer { admission }
    }
}

impl<S> tower_layer::Layer<S> for GrpcAdmissionLayer {
    type Service = GrpcAdmission<S>;
    fn layer(&self, inner: S) -> GrpcAdmission<S> {
        GrpcAdmission {
            inner,
            admission: Arc::clone(&self.admission),
        }
    }
}

#[derive(Clone)]
pub struct GrpcAdmission<S> {
    inner: S,
    admission: Arc<Admission>,
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;

fn grpc_peer(req: &GrpcRequest) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
        .map(|a| a.ip())
}

fn grpc_refusal(r: Refusal) -> GrpcResponse {
    crate::api::grpc::convert::status(r.error()).into_http()
}

impl<S> tower_service::Service<GrpcRequest> for GrpcAdmission<S>
where
    S: tower_service::Service<GrpcRequest, Response = GrpcResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GrpcResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: GrpcRequest) -> Self::Future {
        let ticket = match self.admission.admit(grpc_peer(&req)) {
            Ok(t) => t,
            Err(r) => return Box::pin(std::future::ready(Ok(grpc_refusal(r)))),
        };
        // The service that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = Arc::clone(&self.admission);
        Box::pin(async move {
            let timeout = admission.config().request_timeout;
            match tokio::time::timeout(timeout, inner.call(req)).await {
                // The ticket lives as long as the response body: a stream holds its slot.
                Ok(Ok(mut response)) => {
                    size_limit_is_resource_exhausted(&mut response);
                    Ok(response.map(|body| {
                        tonic::body::Body::new(Held {
                            body,
                            _ticket: ticket,
                        })
                    }))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    admission.timed_out();
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the request took longer than {} ms (limits.request_timeout_ms)",
                        timeout.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// tonic answers a request message over `grpc.max_message_bytes` with OUT_OF_RANGE; the
/// gRPC convention (and every other size limit of this node) is RESOURCE_EXHAUSTED.
/// Unary calls carry the status in the response headers, where it is rewritten.
fn size_limit_is_resource_exhausted(response: &mut GrpcResponse) {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // grpc-message is percent-encoded.
            .is_some_and(|m| m.contains("message%20length%20too%20large"));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// A response body that keeps its request's ticket until it is finished or dropped.
struct Held {
    body: tonic::body::Body,
    _ticket: Ticket,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

// The connection information tonic's server puts in each request (`grpc_peer` reads it).
impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}
