//! The HTTP adapter (axum): the Handle.Net v9 compatible REST API, `/healthz`, `/metrics`.
//!
//! - `GET /api/handles/{identifier}` (`type=`, `index=` filters, `publicOnly`): values the
//!   caller may see; forwarded like every resolution.
//! - `PUT /api/handles/{identifier}`: create (`overwrite=false`: 201, or 409 if it exists),
//!   replace (`overwrite`, the default), or with `index=` add/modify exactly those values.
//! - `DELETE /api/handles/{identifier}`: the record, or `index=` values.
//! - `GET /api/handles?prefix=P&page=N&pageSize=M`: identifiers with exactly prefix `P`
//!   (pages count from 0; without `pageSize` every identifier, up to 100,000).
//!
//! With the console on, its routes (`api::console`) are served beside these, and the
//! fallback serves its page for paths that hold an identifier (`/88.101.5/X`).
//!
//! Authentication: `Authorization: Bearer <token>`, or HTTP Basic as Handle clients send it:
//! user `index:handle` (percent-encoded or not), password = the token of the enterprise that
//! owns the handle's prefix (or the admin token). Every error is JSON
//! `{"responseCode": N, "handle": ..., "message": ...}` without internal detail.

pub mod convert;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::admission::Admission;
use crate::auth::Caller;
use crate::error::{Error, ErrorKind};
use crate::identifier::Identifier;
use crate::resolver::{Core, Filter, Interface, Presented, RegisterOutcome, Requester, Update};
use crate::telemetry::{Figures, Forwarding, Telemetry};
use convert::code;

/// Most identifiers one listing page returns (also the page of a listing without
/// `pageSize`; its `nextCursor` leads on).
const MAX_PAGE: usize = 10_000;
/// Most identifiers the Handle form `page=P&pageSize=N` may skip (`P × N`); past it, page
/// with `cursor=` (each page then costs what it returns).
const MAX_SKIP: usize = 10_000;

#[derive(Clone)]
pub struct HttpState {
    pub core: Arc<Core>,
    pub admission: Arc<Admission>,
    pub telemetry: Arc<Telemetry>,
    /// The web console, when it is on.
    pub console: Option<Arc<crate::api::console::Console>>,
}

/// The routes of the HTTP interface (and of the console, when it is on).
pub fn router(state: HttpState) -> Router {
    let admission = Arc::clone(&state.admission);
    let console = state.console.clone();
    let mut app = Router::new()
        .route("/api/handles", get(list))
        .route(
            "/api/handles/{*handle}",
            get(read).put(write).delete(remove),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Some(console) = &console {
        app = app.merge(crate::api::console::router(Arc::clone(console)));
    }
    app.fallback(move |request: axum::extract::Request| {
        let console = console.clone();
        async move {
            if let Some(console) = &console {
                if let Some(page) = crate::api::console::identifier_page(console, &request) {
                    return page;
                }
            }
            reply(
                StatusCode::NOT_FOUND,
                json!({ "responseCode": code::PROTOCOL_ERROR, "message": "no such endpoint" }),
            )
        }
    })
    .layer(axum::extract::DefaultBodyLimit::max(
        admission.config().max_http_body_bytes,
    ))
    .route_layer(axum::middleware::from_fn_with_state(admission, admit))
}

/// Plain-HTTP answer to a connection over `limits.max_connections`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 64\r\n\r\n{\"responseCode\":3,\"message\":\"too many connections: retry later\"}";

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown`, then lets
/// open requests finish. Connections pass through admission (limit, idle timeout);
/// request headers must arrive within the idle timeout. Connections whose TLS handshake
/// fails (no or untrusted client certificate under mutual TLS) are dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    admission: Arc<Admission>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let idle = admission.config().idle_timeout;
    let over = (tls.is_none()).then_some(BUSY);
    let mut incoming = admission.incoming(listener, over, shutdown.clone());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = tokio_util::task::TaskTracker::new();
    while let Some(conn) = incoming.recv().await {
        let Ok(conn) = conn else { continue };
        let peer = conn.peer();
        let (acceptor, app, stop) = (acceptor.clone(), router.clone(), shutdown.clone());
        connections.spawn(async move {
            let app = app.layer(axum::Extension(ConnectInfo(peer)));
            match acceptor {
                Some(acceptor) => match tokio::time::timeout(idle, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, idle, peer, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => serve_connection(conn, app, idle, peer, stop).await,
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One HTTP/1.1 or HTTP/2 connection; on `stop`, finishes the request in progress and ends.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    idle: std::time::Duration,
    peer: SocketAddr,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(idle / 2))
        .keep_alive_timeout(idle);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// Errors produced before a handler runs (axum's rejections: body too large, a path that
/// is not UTF-8, a method not allowed) in the same JSON shape as every other error.
async fn as_json(response: Response, handle_path: bool) -> Response {
    let status = response.status();
    // JSON errors, and the console's pages (a page for an invalid identifier is a 400),
    // stay as they are.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST if handle_path => code::INVALID_HANDLE,
        StatusCode::PAYLOAD_TOO_LARGE => code::INVALID_VALUE,
        _ => code::PROTOCOL_ERROR,
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut out = reply(status, json!({ "responseCode": code, "message": message }));
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// Middleware: the client's request rate, the node's requests in flight, the timeout.
async fn admit(
    State(admission): State<Arc<Admission>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let _ticket = match admission.admit(Some(client.ip())) {
        Ok(t) => t,
        Err(r) => {
            let mut response = Failure::from(r.error()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
    };
    let timeout = admission.config().request_timeout;
    let handles = request.uri().path().starts_with("/api/handles/");
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => as_json(response, handles).await,
        Err(_) => {
            admission.timed_out();
            let message = format!(
                "the request took longer than {} ms (limits.request_timeout_ms)",
                timeout.as_millis()
            );
            Failure::from(Error::new(ErrorKind::Unavailable, message)).into_response()
        }
    }
}

fn reply(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A failed request: its kind (for metrics), HTTP status, Handle response code, message.
struct Failure {
    kind: ErrorKind,
    status: StatusCode,
    code: i64,
    message: String,
    handle: Option<String>,
}

impl Failure {
    fn new(kind: ErrorKind, status: StatusCode, code: i64, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            status,
            code,
            message: message.into(),
            handle: None,
        }
    }

    fn about(mut self, handle: &str) -> Failure {
        self.handle = Some(handle.to_owned());
        self
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let (status, code) = convert::failure(&e);
        Failure::new(e.kind, status, code, e.message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "responseCode": self.code, "message": self.message });
        if let Some(h) = self.handle {
            body["handle"] = json!(h);
        }
        reply(self.status, body)
    }
}

/// Credentials of a request: the token, and for Basic the handle named in the user name.
fn credentials(headers: &HeaderMap) -> Result<Option<(String, Option<String>)>, Failure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unauthorized = |m: &str| {
        Failure::new(
            ErrorKind::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            code::AUTHENTICATION_NEEDED,
            m,
        )
    };
    let value = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some((rest.trim().to_owned(), None)));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("Basic credentials are not base64 of user:password"))?;
        let (user, password) = decoded
            .rsplit_once(':')
            .ok_or_else(|| unauthorized("Basic credentials need user:password"))?;
        let user = percent_encoding::percent_decode_str(user)
            .decode_utf8_lossy()
            .into_owned();
        // "index:handle" (the handle holding the secret); the index is informational.
        let handle = user
            .split_once(':')
            .map(|(_, h)| h)
            .unwrap_or(&user)
            .to_owned();
        return Ok(Some((password.to_owned(), Some(handle))));
    }
    Err(unauthorized("use Authorization: Bearer <token> or Basic"))
}

/// Authenticates on the blocking pool; for Basic, the user's handle must belong to the
/// caller.
///
/// The request carries the client's `x-idnode-request-id`, if it sent one, into its writes.
async fn caller(
    core: &Arc<Core>,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<Requester, Failure> {
    let request = match headers.get(crate::resolver::REQUEST_ID_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if crate::resolver::valid_request_id(s) => Some(s.to_owned()),
            _ => {
                return Err(Failure::from(Error::invalid(format!(
                    "{} must be 1-128 visible ASCII characters",
                    crate::resolver::REQUEST_ID_HEADER
                ))))
            }
        },
    };
    let Some((token, handle)) = credentials(headers)? else {
        return Ok(Requester::new(
            Caller::Anonymous,
            &Presented::anonymous(),
            request,
        ));
    };
    let presented = Presented {
        token: Some(token),
        client: Some(client.ip()),
    };
    let asked = presented.clone();
    let caller = core
        .blocking(move |c| {
            let caller = c.caller(&asked)?;
            if let Some(h) = handle {
                let owned = match Identifier::parse(&h) {
                    Ok(id) => {
                        caller.owns_identifier(&id, &c.config().node_prefix)
                            || caller == Caller::Admin
                    }
                    Err(_) => false,
                };
                if !owned {
                    return Err(Error::unauthenticated(format!(
                        "the credentials do not belong to user handle {h}"
                    )));
                }
            }
            Ok(caller)
        })
        .await?;
    Ok(Requester::new(caller, &presented, request))
}

fn presented(headers: &HeaderMap, client: SocketAddr) -> Result<Presented, Failure> {
    match credentials(headers)? {
        Some((token, _)) => Ok(Presented {
            token: Some(token),
            client: Some(client.ip()),
        }),
        None => Ok(Presented::anonymous()),
    }
}

fn parse_id(core: &Core, text: &str) -> Result<Identifier, Failure> {
    core.parse_identifier(text).map_err(|e| {
        Failure::new(
            ErrorKind::InvalidArgument,
            StatusCode::BAD_REQUEST,
            code::INVALID_HANDLE,
            e.message,
        )
        .about(text)
    })
}

fn indexes(pairs: &[(String, String)]) -> Result<(Vec<u32>, bool), Failure> {
    let mut out = Vec::new();
    let mut various = false;
    for v in convert::all(pairs, "index") {
        if v == "various" {
            various = true;
            continue;
        }
        out.push(v.parse().map_err(|_| {
            Failure::new(
                ErrorKind::InvalidArgument,
                StatusCode::BAD_REQUEST,
                code::PROTOCOL_ERROR,
                format!("index {v:?} is not a number"),
            )
        })?);
    }
    Ok((out, various))
}

/// Runs one request's work and counts it in the metrics: outcome and latency.
async fn observed(
    t: &Telemetry,
    op: &'static str,
    work: impl std::future::Future<Output = Result<Response, Failure>>,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let r = work.await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(f) => f.kind.name(),
    };
    t.request("http", op, outcome, started.elapsed());
    r
}

async fn read(
    State(s): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    observed(
        &s.telemetry,
        "get",
        read_inner(&s, &handle, raw.as_deref(), &headers, client),
    )
    .await
    .map_err(|f| f.about(&handle))
}

async fn read_inner(
    s: &HttpState,
    handle: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<Response, Failure> {
    let id = parse_id(&s.core, handle)?;
    let q = convert::query_pairs(raw);
    let (idx, _) = indexes(&q)?;
    let filter = Filter {
        types: convert::all(&q, "type").map(str::to_owned).collect(),
        indexes: idx,
    };
    let filtered = !filter.types.is_empty() || !filter.indexes.is_empty();
    let presented = if convert::flag(&q, "publicOnly") == Some(true) {
        Presented::anonymous()
    } else {
        presented(headers, client)?
    };
    let resolved = s
        .core
        .resolve_routed(presented, id.clone(), filter, 0, Interface::Http)
        .await?;
    let response_code = if filtered && resolved.values.is_empty() {
        code::VALUES_NOT_FOUND
    } else {
        code::SUCCESS
    };
    let values: Vec<Json> = resolved.values.iter().map(convert::value_to_json).collect();
    let body = json!({ "responseCode": response_code, "handle": id.to_string(), "values": values });
    if convert::flag(&q, "pretty") == Some(true) {
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response());
    }
    Ok(reply(StatusCode::OK, body))
}

async fn write(
    State(s): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    observed(
        &s.telemetry,
        "put",
        write_inner(&s, &handle, raw.as_deref(), &headers, body, client),
    )
    .await
    .map_err(|f| f.about(&handle))
}

async fn write_inner(
    s: &HttpState,
    handle: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    client: SocketAddr,
) -> Result<Response, Failure> {
    let protocol = |m: String| {
        Failure::new(
            ErrorKind::InvalidArgument,
            StatusCode::BAD_REQUEST,
            code::PROTOCOL_ERROR,
            m,
        )
    };
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_body {
        return Err(protocol("PUT needs Content-Type: application/json".into()));
    }
    let id = parse_id(&s.core, handle)?;
    let q = convert::query_pairs(raw);
    if convert::flag(&q, "mintNewSuffix") == Some(true) {
        return Err(Failure::new(
            ErrorKind::InvalidArgument,
            StatusCode::NOT_IMPLEMENTED,
            code::NOT_SUPPORTED,
            "mintNewSuffix is not supported: choose the suffix",
        ));
    }
    let overwrite = convert::flag(&q, "overwrite").unwrap_or(true);
    let (idx, various) = indexes(&q)?;
    let json: Json = serde_json::from_slice(&body)
        .map_err(|e| protocol(format!("the body is not JSON: {e}")))?;
    let (values, body_handle) = convert::body_values(&json).map_err(|e| protocol(e.message))?;
    if let Some(h) = body_handle {
        if parse_id(&s.core, &h)? != id {
            return Err(protocol(format!(
                "the body's handle {h} differs from the path's {id}"
            )));
        }
    }
    let caller = caller(&s.core, headers, client).await?;
    let done = |status, response_code| {
        Ok(reply(
            status,
            json!({ "responseCode": response_code, "handle": id.to_string() }),
        ))
    };

    let id_for_edit = id.clone();
    if idx.is_empty() && !various {
        let record = crate::record::Record::new(values);
        let (target, creator) = (id.clone(), caller.clone());
        if !overwrite {
            let outcome = s
                .core
                .blocking(move |c| creator.acting(|| c.register(&creator, target, record)))
                .await;
            return match outcome {
                Ok(RegisterOutcome::Registered) => done(StatusCode::CREATED, code::SUCCESS),
                Ok(RegisterOutcome::AlreadyPresent)
                | Err(Error {
                    kind: ErrorKind::AlreadyExists,
                    ..
                }) => Err(Failure::new(
                    ErrorKind::AlreadyExists,
                    StatusCode::CONFLICT,
                    code::HANDLE_ALREADY_EXISTS,
                    format!("{id} already exists"),
                )),
                Err(e) => Err(e.into()),
            };
        }
        // Overwrite: replace when present, else create (one core operation).
        s.core
            .blocking(move |c| creator.acting(|| c.put(&creator, target, record)))
            .await?;
        return done(StatusCode::OK, code::SUCCESS);
    }

    // index=...: add or modify exactly these values, merged into the record.
    if !various {
        let mut sent: Vec<u32> = values.iter().map(|v| v.index).collect();
        let mut asked = idx.clone();
        sent.sort_unstable();
        asked.sort_unstable();
        asked.dedup();
        if sent != asked {
            return Err(protocol(format!(
                "the body's value indexes {sent:?} differ from the index parameters {asked:?}"
            )));
        }
    }
    // Without overwrite a value already at an index is a conflict (Handle 201); with it,
    // values are put: added or replacing, as the record has the index.
    let edit = match overwrite {
        true => Update::Edit {
            add: Vec::new(),
            modify: Vec::new(),
            remove: Vec::new(),
            put: values,
        },
        false => Update::Edit {
            add: values,
            modify: Vec::new(),
            remove: Vec::new(),
            put: Vec::new(),
        },
    };
    s.core
        .blocking(move |c| caller.acting(|| c.update(&caller, &id_for_edit, edit)))
        .await?;
    done(StatusCode::OK, code::SUCCESS)
}

async fn remove(
    State(s): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    observed(
        &s.telemetry,
        "delete",
        remove_inner(&s, &handle, raw.as_deref(), &headers, client),
    )
    .await
    .map_err(|f| f.about(&handle))
}

async fn remove_inner(
    s: &HttpState,
    handle: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<Response, Failure> {
    let id = parse_id(&s.core, handle)?;
    let q = convert::query_pairs(raw);
    let (idx, _) = indexes(&q)?;
    let caller = caller(&s.core, headers, client).await?;
    let target = id.clone();
    s.core
        .blocking(move |c| {
            caller.acting(|| {
                if idx.is_empty() {
                    return c.delete(&caller, &target);
                }
                let edit = Update::Edit {
                    add: Vec::new(),
                    modify: Vec::new(),
                    remove: idx,
                    put: Vec::new(),
                };
                c.update(&caller, &target, edit).map(|_| ())
            })
        })
        .await?;
    Ok(reply(
        StatusCode::OK,
        json!({ "responseCode": code::SUCCESS, "handle": id.to_string() }),
    ))
}

async fn list(
    State(s): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    observed(
        &s.telemetry,
        "list",
        list_inner(&s, raw.as_deref(), &headers, client),
    )
    .await
}

async fn list_inner(
    s: &HttpState,
    raw: Option<&str>,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<Response, Failure> {
    let q = convert::query_pairs(raw);
    let protocol = |m: &str| {
        Failure::new(
            ErrorKind::InvalidArgument,
            StatusCode::BAD_REQUEST,
            code::PROTOCOL_ERROR,
            m,
        )
    };
    let prefix_text = convert::all(&q, "prefix")
        .next()
        .ok_or_else(|| protocol("prefix is required"))?
        .to_owned();
    let prefix = s.core.parse_prefix(&prefix_text).map_err(Failure::from)?;
    let number = |name: &str| -> Result<Option<usize>, Failure> {
        convert::all(&q, name)
            .next()
            .map(|v| {
                v.parse()
                    .map_err(|_| protocol("page and pageSize must be numbers"))
            })
            .transpose()
    };
    let page = number("page")?.unwrap_or(0);
    let page_size = number("pageSize")?;
    let cursor = convert::all(&q, "cursor").next().map(str::to_owned);
    let take = page_size.unwrap_or(MAX_PAGE);
    if take == 0 || take > MAX_PAGE {
        return Err(protocol(&format!("pageSize must be 1 to {MAX_PAGE}")));
    }
    let skip = page.saturating_mul(take);
    if skip > MAX_SKIP {
        return Err(protocol(&format!(
            "page × pageSize may be at most {MAX_SKIP}: page further with cursor= (each \
             answer's nextCursor)"
        )));
    }
    if skip > 0 && cursor.is_some() {
        return Err(protocol("page and cursor do not go together"));
    }
    let caller = caller(&s.core, headers, client).await?;
    // The scan runs in store pages of at most 1000 keys; a client that hangs up (or a
    // request that times out) stops it at the next page.
    let abandoned = Abandoned::default();
    let stop = abandoned.flag();
    let (handles, next, total) = s
        .core
        .blocking(move |c| {
            let total = c.listing_total(&caller, &prefix)?;
            let (handles, next) = list_page(c, &caller, &prefix, cursor, skip, take, &stop)?;
            Ok((handles, next, total))
        })
        .await?;
    drop(abandoned);
    let mut body = json!({
        "responseCode": code::SUCCESS,
        "prefix": prefix_text,
        "totalCount": total.to_string(),
        "handles": handles,
    });
    if let Some(n) = page_size {
        body["page"] = json!(page);
        body["pageSize"] = json!(n);
    }
    if let Some(next) = next {
        body["nextCursor"] = json!(next);
    }
    Ok(reply(StatusCode::OK, body))
}

/// One page of a listing: `take` identifiers after skipping `skip` (from `cursor`), read in
/// store pages of at most 1000 keys; `stop` (the request was abandoned) ends it before the
/// next store page. Returns the identifiers and the cursor after them, if more follow.
fn list_page(
    c: &Core,
    caller: &Caller,
    prefix: &crate::identifier::Prefix,
    mut cursor: Option<String>,
    skip: usize,
    take: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(Vec<String>, Option<String>), Error> {
    let (mut seen, mut out) = (0usize, Vec::new());
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Unavailable, "listing abandoned"));
        }
        let want = (skip + take - seen).min(1000);
        let listing = c.list(caller, prefix, cursor.as_deref(), want)?;
        for id in listing.identifiers {
            if seen >= skip {
                out.push(id.to_string());
            }
            seen += 1;
        }
        cursor = listing.next_cursor;
        if cursor.is_none() || out.len() >= take {
            return Ok((out, cursor));
        }
    }
}

/// Set when the request that started blocking work is dropped before the work is done.
#[derive(Default)]
struct Abandoned(Arc<std::sync::atomic::AtomicBool>);

impl Abandoned {
    fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn healthz(State(s): State<HttpState>) -> Response {
    let check = s.core.blocking(|c| c.node_registered()).await;
    match check {
        Ok(n) => reply(
            StatusCode::OK,
            json!({ "status": "ok", "store": "ok", "node_prefix": s.core.config().node_prefix.to_string(), "registered": n }),
        ),
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "error", "store": "unavailable" }),
        ),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    // A scrape that cannot render is an error, never an empty 200 (an empty page reads as
    // "no series" to Prometheus).
    let admission = Arc::clone(&s.admission);
    let telemetry = Arc::clone(&s.telemetry);
    let rendered = s
        .core
        .blocking(move |c| Ok(telemetry.render(&figures(c, &admission))))
        .await;
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(e) => Failure::from(e).into_response(),
    }
}

/// What `/metrics` shows besides the requests recorded in the registry. Blocking (counts
/// and store properties).
fn figures(core: &Core, admission: &Admission) -> Figures {
    let counts = core
        .counts(&Caller::Admin)
        .map_err(|e| tracing::warn!(error = %e, "metrics: counts unavailable"))
        .ok();
    let r = admission.refused();
    Figures {
        registered: counts.as_ref().map(|c| c.node_registered),
        registered_by_prefix: counts.map(|c| c.prefixes).unwrap_or_default(),
        resolutions: Interface::ALL
            .iter()
            .map(|via| {
                let (local, forwarded) = core.resolutions().get(*via);
                (via.name(), local, forwarded)
            })
            .collect(),
        forwarding: core.remote().map(|remote| {
            let s = remote.stats();
            Forwarding {
                cache_hits: s.cache_hits,
                cache_misses: s.forwarded.saturating_sub(s.cache_hits),
                stale_answers: s.stale_answers,
                upstream_calls: s.upstream_calls,
                remote_calls: s.remote_calls,
                failures: s.failures,
            }
        }),
        store: core.store().properties(),
        site: core.site_position(),
        refused: vec![
            ("client_rate", r.rate),
            ("in_flight", r.busy),
            ("timeout", r.timeouts),
            ("connections", r.connections),
            ("idle", r.idle),
            ("read_queue", core.reads_refused()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::identifier::Prefix;
    use crate::record::{Record, Value};

    /// A listing stops at its next store page once its request is gone.
    #[test]
    fn an_abandoned_listing_stops_and_a_dropped_request_abandons_it() {
        let core = Core::in_memory("88.101");
        let prefix = Prefix::parse("88.101.5").unwrap();
        core.create_enterprise(&Caller::Admin, &prefix, "Listing Co", "", None)
            .unwrap();
        for i in 0..1500 {
            let id = Identifier::parse(&format!("88.101.5/L-{i:04}")).unwrap();
            let record = Record::new(vec![Value::text(1, "URL", "https://e.cn")]);
            core.register(&Caller::Admin, id, record).unwrap();
        }
        let go = AtomicBool::new(false);
        let (ids, next) = list_page(&core, &Caller::Admin, &prefix, None, 1000, 400, &go).unwrap();
        assert_eq!((ids.len(), ids[0].as_str()), (400, "88.101.5/L-1000"));
        assert_eq!(next.as_deref(), Some("L-1399"));

        let abandoned = Abandoned::default();
        let stop = abandoned.flag();
        assert!(!stop.load(Ordering::Relaxed));
        drop(abandoned);
        assert!(
            stop.load(Ordering::Relaxed),
            "dropping the request sets the flag"
        );
        let e = list_page(&core, &Caller::Admin, &prefix, None, 1000, 400, &stop).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }
}
