//! How the client commands reach a node: `--node` (a URL or HOST:PORT), TLS (`--ca`,
//! `--cert`, `--key`), the bearer token, and connection and gRPC errors as messages for
//! people. The gRPC stubs and printing stay in `cli`; rules stay in the node.

use std::error::Error as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;

/// TLS toward an `https://` node. Without `--ca` the system's roots are trusted (which
/// honour `SSL_CERT_FILE` and `SSL_CERT_DIR`).
#[derive(Args, Clone, Default)]
pub struct TlsArgs {
    /// CA certificate (PEM) to trust for an https:// node, instead of the system's roots.
    #[arg(long, global = true, env = "IDNODE_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (PEM) for a node that requires one (mutual TLS); with --key.
    #[arg(long, global = true, env = "IDNODE_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "IDNODE_KEY")]
    pub(crate) key: Option<PathBuf>,
}

impl TlsArgs {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// How to reach a node and who to be.
#[derive(Args, Clone)]
pub struct Connection {
    /// The node's gRPC URL: http://HOST:PORT, https://HOST:PORT, or HOST:PORT (https:// when
    /// --ca, --cert or --key is given, else http://). Several, comma-separated (the servers
    /// of a replicated site): the first that accepts the connection is used, and a call it
    /// answers UNAVAILABLE goes to the next.
    #[arg(
        long,
        global = true,
        env = "IDNODE_NODE",
        default_value = "http://127.0.0.1:7000"
    )]
    pub(crate) node: String,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// File holding a bearer token (admin or enterprise).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Bearer token (prefer --token-file: environment variables leak into process listings less, files into shells' history not at all).
    #[arg(
        long = "token",
        global = true,
        env = "IDNODE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

pub(crate) type Svc = InterceptedService<Channel, CliAuth>;

/// The bearer token, and the request id of the call [`Client::call`] is making (the same on
/// its retries, so a site applies the call once however many servers it reaches).
#[derive(Clone)]
pub(crate) struct CliAuth {
    bearer: BearerAuth,
    request: Arc<Mutex<Option<tonic::metadata::AsciiMetadataValue>>>,
}

impl tonic::service::Interceptor for CliAuth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let mut req = self.bearer.call(req)?;
        if let Some(id) = self
            .request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            req.metadata_mut()
                .insert(idnode::api::grpc::REQUEST_ID_HEADER, id);
        }
        Ok(req)
    }
}

/// A connected client of one node: of one server of it, and the others to fail over to.
pub(crate) struct Client {
    /// The server in use, and its URL.
    channel: Mutex<(Svc, String)>,
    auth: CliAuth,
    /// Every server of `--node`, and the position of the one in use.
    servers: Vec<(String, Endpoint)>,
    at: Mutex<usize>,
    json: bool,
}

/// The URL to dial for `node`: `http://` and `https://` URLs as given; a bare HOST:PORT gets
/// `https://` when TLS flags are given, else `http://`. Any other scheme, or TLS flags with
/// an `http://` URL (the token would travel in the clear), is refused with what to write.
pub(crate) fn node_url(node: &str, tls: &TlsArgs) -> anyhow::Result<String> {
    let node = node.trim();
    match node.split_once("://") {
        None => Ok(format!(
            "{}://{node}",
            if tls.any() { "https" } else { "http" }
        )),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            Ok(format!("https://{rest}"))
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            if tls.any() {
                bail!(
                    "--node {node}: --ca, --cert and --key (IDNODE_CA, IDNODE_CERT, IDNODE_KEY) are for TLS; write https://{rest}, or drop them for a plain-text node"
                );
            }
            Ok(format!("http://{rest}"))
        }
        Some((scheme, rest)) => bail!(
            "--node {node}: unknown scheme {scheme:?}; write http://{rest}, https://{rest} or {rest}"
        ),
    }
}

/// A gRPC endpoint for `node` (see [`node_url`]) with TLS configured for `https://`: the
/// CA of `--ca`, else the system's roots, and the client certificate of `--cert/--key`.
/// Returns the URL dialled as well. Does not connect.
pub(crate) fn endpoint(node: &str, tls: &TlsArgs) -> anyhow::Result<(String, Endpoint)> {
    let identity = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => bail!("--cert and --key (IDNODE_CERT, IDNODE_KEY) go together"),
    };
    let url = node_url(node, tls)?;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| {
            anyhow!(
                "--node {node}: {}; write http://HOST:PORT, https://HOST:PORT or HOST:PORT",
                error_chain(&e)
            )
        })?
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("https://") {
        // The error's text already holds its cause: `context` would say it twice.
        let config = idnode::tls::client_config(tls.ca.as_deref(), identity)
            .map_err(|e| anyhow!("client TLS (--ca, --cert, --key): {e}"))?;
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| anyhow!("client TLS for {url}: {}", error_chain(&e)))?;
    }
    Ok((url, endpoint))
}

/// Connects `endpoint` (from [`endpoint`]), or says why the node cannot be reached.
pub(crate) async fn connect(url: &str, endpoint: Endpoint) -> anyhow::Result<Channel> {
    endpoint
        .connect()
        .await
        .map_err(|e| unreachable(url, &error_chain(&e)))
}

/// "Cannot reach the node" with the cause and what to try.
fn unreachable(url: &str, cause: &str) -> anyhow::Error {
    let refused_certificate = ["CertificateRequired", "BadCertificate", "UnknownCA"]
        .iter()
        .any(|alert| cause.contains(alert));
    let hint = if refused_certificate {
        "the node requires a client certificate signed by its CA: give --cert FILE --key FILE (IDNODE_CERT, IDNODE_KEY)"
    } else if cause.contains("ertificate") {
        "trust the node's CA with --ca FILE (IDNODE_CA); its certificate must name the host in --node"
    } else if url.starts_with("https://") {
        // A refused client certificate can also show as a closed connection, when the
        // server's alert is not read first.
        "is `idnode serve` running there, with TLS? set --node or IDNODE_NODE; a node that requires client certificates needs --cert FILE --key FILE (IDNODE_CERT, IDNODE_KEY)"
    } else {
        "is `idnode serve` running there? set --node or IDNODE_NODE"
    };
    anyhow!("cannot reach the node at {url}: {cause} ({hint})")
}

/// An error and its causes, each said once: transport errors often repeat their cause's text
/// in their own.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    chain_from(e.to_string(), e.source())
}

fn chain_from(mut text: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl Connection {
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            return Ok(Some(t.trim().to_owned()));
        }
        Ok(self.token.clone().map(|t| t.trim().to_owned()))
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let auth = BearerAuth::new(self.token()?.as_deref()).map_err(|e| anyhow!("{e}"))?;
        let nodes: Vec<&str> = self
            .node
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let servers = nodes
            .iter()
            .map(|node| endpoint(node, &self.tls))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let auth = CliAuth {
            bearer: auth,
            request: Arc::new(Mutex::new(None)),
        };
        let mut failed = None;
        for (at, (url, endpoint)) in servers.iter().enumerate() {
            match connect(url, endpoint.clone()).await {
                Ok(channel) => {
                    return Ok(Client {
                        channel: Mutex::new((
                            InterceptedService::new(channel, auth.clone()),
                            url.clone(),
                        )),
                        auth,
                        servers: servers.clone(),
                        at: Mutex::new(at),
                        json: self.json,
                    })
                }
                // The next server of the site, if there is one.
                Err(e) => failed = Some(e),
            }
        }
        Err(failed.unwrap_or_else(|| anyhow!("--node is empty")))
    }
}

impl Client {
    fn svc(&self) -> Svc {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
    fn url(&self) -> String {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
    pub(crate) fn resolver(&self) -> pb::resolver_client::ResolverClient<Svc> {
        pb::resolver_client::ResolverClient::new(self.svc())
    }
    pub(crate) fn registry(&self) -> pb::registry_client::RegistryClient<Svc> {
        pb::registry_client::RegistryClient::new(self.svc())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
    pub(crate) fn admin(&self) -> pb::admin_client::AdminClient<Svc> {
        pb::admin_client::AdminClient::new(self.svc())
    }
    pub(crate) fn toplevel(&self) -> pb::top_level_client::TopLevelClient<Svc> {
        pb::top_level_client::TopLevelClient::new(self.svc())
    }

    /// Makes one unary call (`call` builds it on the stubs above), named by a request id of
    /// its own: when the server answers UNAVAILABLE (it cannot reach its site's log) or the
    /// call does not get through (it went away), the same call goes to the next server of `--node` that accepts a
    /// connection, each at most once. With the id, a site applies the call once.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<tonic::Response<T>, Status>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let id = format!("cli-{:032x}", rand::random::<u128>());
        *self.auth.request.lock().unwrap_or_else(|e| e.into_inner()) = id.parse().ok();
        let start = *self.at.lock().unwrap_or_else(|e| e.into_inner());
        let mut tried = 1;
        let outcome = loop {
            match call().await {
                // UNAVAILABLE from the node, or a status with a source: the call did not
                // get through (the connection broke).
                Err(s)
                    if (s.code() == Code::Unavailable || s.source().is_some())
                        && tried < self.servers.len() =>
                {
                    let mut moved = false;
                    while tried < self.servers.len() && !moved {
                        let next = (start + tried) % self.servers.len();
                        tried += 1;
                        let (url, endpoint) = &self.servers[next];
                        if let Ok(channel) = connect(url, endpoint.clone()).await {
                            eprintln!("{}: {}; asking {url}", self.url(), s.message());
                            *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = (
                                InterceptedService::new(channel, self.auth.clone()),
                                url.clone(),
                            );
                            *self.at.lock().unwrap_or_else(|e| e.into_inner()) = next;
                            moved = true;
                        }
                    }
                    if !moved {
                        break Err(s);
                    }
                }
                other => break other,
            }
        };
        *self.auth.request.lock().unwrap_or_else(|e| e.into_inner()) = None;
        outcome
    }
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Turns a gRPC status into a message for people. A status with a source never came
    /// from the node: the request did not get through (connection, TLS; over TLS 1.3 a
    /// refused client certificate shows only when the first request is sent). One without is
    /// the node's answer, UNAVAILABLE included (e.g. its upstream failed): the node is up.
    pub(crate) fn fail(&self, s: Status) -> anyhow::Error {
        if s.source().is_some() {
            return unreachable(&self.url(), &chain_from(s.message().to_owned(), s.source()));
        }
        let what = match s.code() {
            Code::Unavailable => format!("unavailable (answered by the node at {})", self.url()),
            Code::Unauthenticated => "not authenticated (give --token-file or IDNODE_TOKEN)".into(),
            Code::PermissionDenied => "permission denied".into(),
            Code::NotFound => "not found".into(),
            Code::AlreadyExists => "already exists".into(),
            Code::InvalidArgument => "invalid request".into(),
            Code::ResourceExhausted => "limit exceeded".into(),
            other => format!("{other:?}"),
        };
        anyhow!("{what}: {}", s.message())
    }

    pub(crate) fn print_json<T: serde::Serialize>(&self, v: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: bool) -> TlsArgs {
        TlsArgs {
            ca: ca.then(|| PathBuf::from("ca.pem")),
            ..Default::default()
        }
    }

    #[test]
    fn node_urls() {
        let check = |node: &str, with_ca: bool, expected: Result<&str, &str>| match (
            node_url(node, &tls(with_ca)),
            expected,
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{node}"),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{node}: {e}"),
            (got, want) => panic!("{node}: got {got:?}, expected {want:?}"),
        };
        check("http://127.0.0.1:7000", false, Ok("http://127.0.0.1:7000"));
        check(
            "https://node.example:443",
            false,
            Ok("https://node.example:443"),
        );
        check("https://127.0.0.1:7000", true, Ok("https://127.0.0.1:7000"));
        check(
            "HTTPS://127.0.0.1:7000",
            false,
            Ok("https://127.0.0.1:7000"),
        );
        check("127.0.0.1:17000", false, Ok("http://127.0.0.1:17000"));
        check("127.0.0.1:17000", true, Ok("https://127.0.0.1:17000"));
        check(" localhost:7000 ", false, Ok("http://localhost:7000"));
        check(
            "http://127.0.0.1:7000",
            true,
            Err("write https://127.0.0.1:7000"),
        );
        check(
            "grpc://127.0.0.1:7000",
            false,
            Err("write http://127.0.0.1:7000"),
        );
    }

    #[test]
    fn causes_are_said_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let refused = E("Connection refused (os error 111)", None);
        let e = E(
            "transport error",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E("tcp connect error", Some(Box::new(refused))))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: tcp connect error: Connection refused (os error 111)"
        );
    }
}
