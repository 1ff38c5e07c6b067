//! Test support: a real node on 127.0.0.1:0 with its own RocksDB directory, and tonic
//! clients with or without a bearer token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;
use idnode::config::{Config, FileConfig, Overrides};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Svc = InterceptedService<Channel, BearerAuth>;

pub struct TestNode {
    pub addr: SocketAddr,
    /// DNS (UDP and TCP), when enabled.
    pub dns_addr: Option<SocketAddr>,
    /// HTTP base address, when enabled.
    pub http_addr: Option<SocketAddr>,
    pub admin_token: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
    channel: Channel,
    _dir: Option<tempfile::TempDir>,
}

pub fn config(data_dir: &Path, seed: bool) -> Config {
    Config::resolve(
        FileConfig::default(),
        Overrides {
            data_dir: Some(data_dir.to_owned()),
            grpc_addr: Some("127.0.0.1:0".into()),
            dns_addr: Some("127.0.0.1:0".into()),
            http_addr: Some("127.0.0.1:0".into()),
            no_seed: !seed,
            block_cache_mb: Some(16),
            ..Default::default()
        },
    )
    .expect("test config is valid")
}

impl TestNode {
    /// A node with the seed data set, in a fresh temporary directory.
    pub async fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut n = TestNode::start_in(dir.path(), true).await;
        n._dir = Some(dir);
        n
    }

    /// A node without seed data.
    pub async fn start_empty() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut n = TestNode::start_in(dir.path(), false).await;
        n._dir = Some(dir);
        n
    }

    /// A node on an existing data directory (kept by the caller).
    pub async fn start_in(data_dir: &Path, seed: bool) -> TestNode {
        TestNode::start_with(config(data_dir, seed)).await
    }

    /// A node serving TLS: its clients trust `client` (and present its certificate).
    pub async fn start_tls(config: Config, client: &idnode::tls::ClientTls) -> TestNode {
        TestNode::start_inner(config, Some(client.grpc().unwrap())).await
    }

    /// A node with a prepared configuration (its data directory kept by the caller).
    pub async fn start_with(config: Config) -> TestNode {
        TestNode::start_inner(config, None).await
    }

    async fn start_inner(
        config: Config,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> TestNode {
        let data_dir = config.data_dir.clone();
        let data_dir = data_dir.as_path();
        let opened = idnode::node::open(&config, false).expect("node opens");
        let listeners = idnode::node::bind(&config).await.unwrap();
        let addr = listeners.grpc_addr().unwrap();
        let dns_addr = listeners.dns_addr();
        let http_addr = listeners.http_addr();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            idnode::node::serve(opened, &config, listeners, token)
                .await
                .expect("node serves");
        });
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        // The listener is bound before serving starts, so connecting cannot race it.
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let channel = endpoint.connect().await.unwrap();
        TestNode {
            addr,
            dns_addr,
            http_addr,
            admin_token,
            data_dir: data_dir.to_owned(),
            shutdown,
            handle: Some(handle),
            channel,
            _dir: None,
        }
    }

    /// Stops the node and waits for it to flush and exit.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }

    pub fn seed_token(&self, prefix: &str) -> String {
        std::fs::read_to_string(self.data_dir.join("tokens").join(format!("{prefix}.token")))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn svc(&self, token: Option<&str>) -> Svc {
        InterceptedService::new(self.channel.clone(), BearerAuth::new(token).unwrap())
    }

    pub fn resolver(&self, token: Option<&str>) -> pb::resolver_client::ResolverClient<Svc> {
        pb::resolver_client::ResolverClient::new(self.svc(token))
    }

    pub fn registry(&self, token: Option<&str>) -> pb::registry_client::RegistryClient<Svc> {
        pb::registry_client::RegistryClient::new(self.svc(token))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub fn admin(&self, token: Option<&str>) -> pb::admin_client::AdminClient<Svc> {
        pb::admin_client::AdminClient::new(self.svc(token))
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Creates an enterprise with the admin token and returns its token.
    pub async fn enterprise(&self, prefix: &str, name: &str) -> String {
        self.admin(Some(&self.admin_token))
            .create_enterprise(pb::CreateEnterpriseRequest {
                prefix: prefix.into(),
                name: name.into(),
                industry_code: "C3670".into(),
                token_ttl_secs: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn text(index: u32, value_type: &str, data: &str) -> pb::Value {
    pb::Value {
        index,
        r#type: value_type.into(),
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn private(index: u32, value_type: &str, data: &str) -> pb::Value {
    pb::Value {
        permissions: Some(pb::Permissions {
            admin_read: true,
            admin_write: true,
            public_read: false,
            public_write: false,
        }),
        ..text(index, value_type, data)
    }
}

pub fn record(identifier: &str, values: Vec<pb::Value>) -> pb::Record {
    pb::Record {
        identifier: identifier.into(),
        values,
    }
}

pub fn register_request(r: pb::Record) -> pb::RegisterRequest {
    pb::RegisterRequest { record: Some(r) }
}

/// A resolution of `identifier` with no filters.
pub fn resolve(identifier: &str) -> pb::ResolveRequest {
    pb::ResolveRequest {
        identifier: identifier.into(),
        ..Default::default()
    }
}

/// Starts the `idnode` binary serving `dir` on free loopback ports (gRPC, DNS, HTTP) and
/// waits for its banner: the child, its gRPC URL and the banner lines.
pub fn spawn_node(dir: &Path, log_level: &str) -> (std::process::Child, String, Vec<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_idnode"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--block-cache-mb",
            "16",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", log_level)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("idnode serve starts");
    let (url, banner) = read_banner(&mut child);
    (child, url, banner)
}

/// Reads `idnode serve`'s banner from its stdout up to the line with the gRPC address
/// (printed after every listener is bound): the node's URL and the lines read.
pub fn read_banner(child: &mut std::process::Child) -> (String, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let mut banner = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .unwrap();
        banner.push(line.clone());
        if let Some(i) = line.find("grpc://") {
            let addr = line[i + 7..]
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',');
            return (format!("http://{addr}"), banner);
        }
    }
}
