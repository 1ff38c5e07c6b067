//! The `idnode` binary as a newcomer uses it: `serve` on a fresh data directory, client
//! commands against it, a restart that keeps the data.

use std::path::Path;
use std::process::{Child, Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_idnode");

struct Served {
    child: Child,
    url: String,
    banner: Vec<String>,
}

fn serve(dir: &Path) -> Served {
    let (child, url, banner) = crate::support::spawn_node(dir, "warn");
    Served { child, url, banner }
}

impl Served {
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idnode(args: &[&str]) -> Output {
    idnode_env(args, &[])
}

/// Runs the CLI with `env` set and none of the caller's idnode or TLS variables.
fn idnode_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for var in [
        "IDNODE_NODE",
        "IDNODE_TOKEN",
        "IDNODE_CA",
        "IDNODE_CERT",
        "IDNODE_KEY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `idnode serve` on a fresh directory with `extra` flags (gRPC on a free port, DNS and HTTP
/// off); its URL has the scheme `scheme`.
fn serve_with(dir: &Path, scheme: &str, extra: &[&str]) -> Served {
    serve_logged(dir, scheme, extra, std::process::Stdio::null())
}

/// [`serve_with`], its logs (warnings and up) going to `logs`.
fn serve_logged(dir: &Path, scheme: &str, extra: &[&str], logs: std::process::Stdio) -> Served {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "off",
            "--http-addr",
            "off",
            "--block-cache-mb",
            "16",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(logs)
        .spawn()
        .expect("idnode serve starts");
    let (url, banner) = crate::support::read_banner(&mut child);
    let url = url.replacen("http://", &format!("{scheme}://"), 1);
    Served { child, url, banner }
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn serve_resolve_register_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    assert!(
        node.banner
            .iter()
            .any(|l| l.contains("admin token written to")),
        "{:?}",
        node.banner
    );
    assert!(
        node.banner
            .iter()
            .any(|l| l.contains("seeded 3 enterprises, 3 templates, 100 records")),
        "{:?}",
        node.banner
    );

    // A seeded identifier resolves, anonymously, with its public values.
    let out = stdout(&idnode(&[
        "resolve",
        "88.101.5/BAT-2024-000001",
        "--node",
        &node.url,
    ]));
    assert!(out.starts_with("88.101.5/BAT-2024-000001\n"), "{out}");
    assert!(
        out.contains("URL") && out.contains("https://trace.example-auto.cn/p/BAT-2024-000001"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&idnode(&[
        "resolve",
        "88.101.5/BAT-2024-000001",
        "--node",
        &node.url,
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["values"][0]["type"], "URL");

    // Register with the seeded enterprise token, then read it back.
    let token_file = dir.path().join("tokens/88.101.5.token");
    let token_file = token_file.to_str().unwrap();
    let out = stdout(&idnode(&[
        "register",
        "88.101.5/CLI-0001",
        "--value",
        "1:URL:https://example.cn/cli",
        "--value",
        "2:batchNo:B-7",
        "--node",
        &node.url,
        "--token-file",
        token_file,
    ]));
    assert!(out.contains("registered 88.101.5/CLI-0001"), "{out}");
    let out = stdout(&idnode(&[
        "update",
        "88.101.5/CLI-0001",
        "--value",
        "2:batchNo:B-8",
        "--node",
        &node.url,
        "--token-file",
        token_file,
    ]));
    assert!(out.contains("B-8"), "{out}");

    // Errors are clear and exit non-zero.
    let denied = idnode(&[
        "register",
        "88.101.8/CLI-0001",
        "--value",
        "1:URL:u",
        "--node",
        &node.url,
        "--token-file",
        token_file,
    ]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"));
    let anon = idnode(&[
        "register",
        "88.101.5/CLI-0002",
        "--value",
        "1:URL:u",
        "--node",
        &node.url,
    ]);
    assert!(String::from_utf8_lossy(&anon.stderr).contains("not authenticated"));
    let missing = idnode(&["resolve", "88.101.5/NOPE", "--node", &node.url]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let unreachable = idnode(&["resolve", "88.101.5/X", "--node", "http://127.0.0.1:1"]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the node"));

    // Admin commands with the admin token file.
    let admin = dir.path().join("admin.token");
    let admin = admin.to_str().unwrap();
    let out = stdout(&idnode(&[
        "enterprise",
        "create",
        "88.101.20",
        "Wuhan Test Co",
        "--industry",
        "C3670",
        "--node",
        &node.url,
        "--token-file",
        admin,
    ]));
    assert!(out.contains("token (shown once): idn_"), "{out}");
    let out = stdout(&idnode(&[
        "enterprise",
        "list",
        "--node",
        &node.url,
        "--token-file",
        admin,
    ]));
    assert!(
        out.contains("88.101.20") && out.contains("88.101.5"),
        "{out}"
    );
    let out = stdout(&idnode(&[
        "counts",
        "--node",
        &node.url,
        "--token-file",
        admin,
        "--json",
    ]));
    let counts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(counts["node_registered"], 101);
    node.stop();

    // A second start keeps the data and does not seed again.
    let node = serve(dir.path());
    assert!(
        !node.banner.iter().any(|l| l.contains("seeded")),
        "{:?}",
        node.banner
    );
    assert!(
        node.banner.iter().any(|l| l.contains("(101 identifiers)")),
        "{:?}",
        node.banner
    );
    let out = stdout(&idnode(&[
        "resolve",
        "88.101.5/CLI-0001",
        "--node",
        &node.url,
    ]));
    assert!(
        out.contains("https://example.cn/cli") && out.contains("B-8"),
        "{out}"
    );
    node.stop();
}

#[test]
fn bad_configuration_fails_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("idnode.toml");
    std::fs::write(
        &cfg,
        "[grpc]\naddr = \"127.0.0.1:0\"\n[limits]\nmax_values = 0\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--dns-addr",
            "off",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_values"));
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for an invalid config"
    );
}

/// Resolve, online import and bench against a TLS node and a mutual-TLS node: the CA from
/// --ca, IDNODE_CA or the system roots (SSL_CERT_FILE), the client certificate from
/// --cert/--key or IDNODE_CERT/IDNODE_KEY; without them, a clear refusal.
#[test]
fn client_commands_reach_tls_and_mutual_tls_nodes() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    stdout(&idnode(&[
        "cert",
        "--out",
        certs.to_str().unwrap(),
        "--hosts",
        "localhost,127.0.0.1",
    ]));
    let file = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    let (ca, server_cert, server_key) = (file("ca.pem"), file("server.pem"), file("server.key"));
    let (client_cert, client_key) = (file("client.pem"), file("client.key"));
    let data = work.path().join("d.jsonl");
    let data = data.to_str().unwrap();
    stdout(&idnode(&[
        "gen",
        "--count",
        "200",
        "--enterprises",
        "3",
        "--seed",
        "4",
        "--out",
        data,
    ]));
    const ID: &str = "88.101.5/BAT-2024-000001";

    // Plain TLS.
    let dir = work.path().join("tls");
    let node = serve_with(
        &dir,
        "https",
        &["--tls-cert", &server_cert, "--tls-key", &server_key],
    );
    assert!(node.url.starts_with("https://127.0.0.1:"), "{}", node.url);
    let out = stdout(&idnode(&["resolve", ID, "--node", &node.url, "--ca", &ca]));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    // The system roots do not hold the development CA...
    let err = stderr(&idnode(&["resolve", ID, "--node", &node.url]));
    assert!(
        err.contains("cannot reach the node") && err.contains("--ca"),
        "{err}"
    );
    // ...unless SSL_CERT_FILE says so; IDNODE_CA stands for --ca.
    let ca_path = Path::new(&ca);
    let out = stdout(&idnode_env(
        &["resolve", ID, "--node", &node.url],
        &[("SSL_CERT_FILE", ca_path)],
    ));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    let out = stdout(&idnode_env(
        &["resolve", ID, "--node", &node.url],
        &[("IDNODE_CA", ca_path)],
    ));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    // TLS flags with a plain-text URL would send the token in the clear: refused.
    let plain = node.url.replacen("https://", "http://", 1);
    let err = stderr(&idnode(&["resolve", ID, "--node", &plain, "--ca", &ca]));
    assert!(err.contains(&format!("write {}", node.url)), "{err}");
    let admin = dir.join("admin.token");
    let admin = admin.to_str().unwrap();
    let r: serde_json::Value = serde_json::from_str(&stdout(&idnode(&[
        "import",
        data,
        "--node",
        &node.url,
        "--ca",
        &ca,
        "--token-file",
        admin,
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        (r["registered"].as_u64(), r["failed"].as_u64()),
        (Some(200), Some(0)),
        "{r}"
    );
    let report = work.path().join("tls.json");
    stdout(&idnode(&[
        "bench",
        "--node",
        &node.url,
        "--ca",
        &ca,
        "--keys",
        data,
        "--count",
        "50",
        "--report",
        report.to_str().unwrap(),
    ]));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (r["requests"].as_u64(), r["ok"].as_u64()),
        (Some(50), Some(50)),
        "{r}"
    );
    node.stop();

    // Mutual TLS: the node requires a client certificate from the CA.
    let dir = work.path().join("mtls");
    let node = serve_with(
        &dir,
        "https",
        &[
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--tls-client-ca",
            &ca,
        ],
    );
    let err = stderr(&idnode(&["resolve", ID, "--node", &node.url, "--ca", &ca]));
    assert!(
        err.contains("--cert"),
        "without a client certificate: {err}"
    );
    let err = stderr(&idnode(&[
        "resolve",
        ID,
        "--node",
        &node.url,
        "--ca",
        &ca,
        "--cert",
        &client_cert,
    ]));
    assert!(err.contains("--cert and --key"), "{err}");
    let with_cert = ["--ca", &ca, "--cert", &client_cert, "--key", &client_key];
    let resolve = [&["resolve", ID, "--node", &node.url][..], &with_cert[..]].concat();
    let out = stdout(&idnode(&resolve));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    let out = stdout(&idnode_env(
        &["resolve", ID, "--node", &node.url],
        &[
            ("IDNODE_CA", ca_path),
            ("IDNODE_CERT", Path::new(&client_cert)),
            ("IDNODE_KEY", Path::new(&client_key)),
        ],
    ));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    let admin = dir.join("admin.token");
    let import = [
        &[
            "import",
            data,
            "--node",
            &node.url,
            "--token-file",
            admin.to_str().unwrap(),
            "--json",
        ][..],
        &with_cert[..],
    ]
    .concat();
    let r: serde_json::Value = serde_json::from_str(&stdout(&idnode(&import))).unwrap();
    assert_eq!(
        (r["registered"].as_u64(), r["failed"].as_u64()),
        (Some(200), Some(0)),
        "{r}"
    );
    let report = work.path().join("mtls.json");
    let bench = [
        &[
            "bench",
            "--node",
            &node.url,
            "--keys",
            data,
            "--count",
            "50",
            "--report",
            report.to_str().unwrap(),
        ][..],
        &with_cert[..],
    ]
    .concat();
    stdout(&idnode(&bench));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (r["requests"].as_u64(), r["ok"].as_u64()),
        (Some(50), Some(50)),
        "{r}"
    );
    node.stop();
}

/// Commands print the canonical identifier or prefix they acted on (prefix lower-cased,
/// suffix as given), not the text typed.
#[test]
fn commands_print_the_canonical_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve_with(dir.path(), "http", &["--no-seed"]);
    let admin = dir.path().join("admin.token");
    let admin = admin.to_str().unwrap();
    let with = |args: &[&str], token: &[&str]| {
        stdout(&idnode(&[args, &["--node", &node.url], token].concat()))
    };
    let out = with(
        &["enterprise", "create", "88.101.ABC", "Mixed Case Co"],
        &["--token-file", admin],
    );
    assert!(out.starts_with("enterprise 88.101.abc "), "{out}");
    let token = out
        .rsplit("(shown once): ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let owner = ["--token", token.as_str()];

    let out = with(&["register", "88.101.ABC/P1", "--value", "1:URL:u"], &owner);
    assert_eq!(out, "registered 88.101.abc/P1\n");
    let out = with(&["register", "88.101.ABC/P1", "--value", "1:URL:u"], &owner);
    assert_eq!(out, "already registered (identical) 88.101.abc/P1\n");
    let out = with(
        &["register", "88.101.Abc/P2", "--value", "1:URL:u", "--json"],
        &owner,
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["identifier"], "88.101.abc/P2");
    let out = with(&["resolve", "88.101.ABC/P1"], &[]);
    assert!(out.starts_with("88.101.abc/P1\n"), "{out}");
    with(
        &["enterprise", "create", "88.101.xyz", "Partner Co"],
        &["--token-file", admin],
    );
    let out = with(&["grant", "add", "88.101.ABC/P1", "88.101.XYZ"], &owner);
    assert_eq!(
        out,
        "88.101.xyz may read the partner values under 88.101.abc/P1\n"
    );
    let out = with(&["grant", "add", "88.101.ABC", "88.101.XYZ"], &owner);
    assert_eq!(
        out,
        "88.101.xyz may read the partner values under 88.101.abc\n"
    );
    let out = with(&["grant", "revoke", "88.101.ABC/P1", "88.101.Xyz"], &owner);
    assert_eq!(out, "revoked the grant of 88.101.xyz on 88.101.abc/P1\n");
    let out = with(&["audit", "proof", "88.101.ABC/P1"], &owner);
    assert!(out.starts_with("88.101.abc/P1: "), "{out}");
    let out = with(&["delete", "88.101.ABC/P2"], &owner);
    assert_eq!(out, "deleted 88.101.abc/P2\n");
    let out = with(
        &[
            "enterprise",
            "quota",
            "88.101.ABC",
            "--max-registrations",
            "9",
        ],
        &["--token-file", admin],
    );
    assert_eq!(out, "quota of 88.101.abc set\n");
    let out = with(
        &["enterprise", "rotate", "88.101.ABC"],
        &["--token-file", admin],
    );
    assert!(out.starts_with("new token of 88.101.abc "), "{out}");
    let out = with(
        &["enterprise", "revoke", "88.101.ABC"],
        &["--token-file", admin],
    );
    assert_eq!(out, "revoked every token of 88.101.abc\n");
    node.stop();
}

/// A listener that cannot bind is named with its address and setting, and nothing is
/// created: the data directory is made only after every listener is bound.
#[test]
fn serve_names_a_taken_address_before_creating_anything() {
    let work = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (name, grpc, http) in [
        ("HTTP (--http-addr", "127.0.0.1:0", addr.as_str()),
        ("gRPC (--grpc-addr", addr.as_str(), "off"),
    ] {
        let data = work.path().join("data");
        let out = Command::new(BIN)
            .args(["serve", "--grpc-addr", grpc, "--http-addr", http])
            .args(["--dns-addr", "off", "--block-cache-mb", "16", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            err.contains(&format!("cannot listen for {name}")) && err.contains(&addr),
            "{err}"
        );
        assert!(!data.exists(), "{name}: the data directory was created");
    }
}

/// `import --offline` into a directory holding no node store is refused (a typo must not
/// become a new node); `--create` makes one.
#[test]
fn offline_import_needs_a_node_directory_or_create() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("d.jsonl");
    let data = data.to_str().unwrap();
    stdout(&idnode(&[
        "gen",
        "--count",
        "20",
        "--enterprises",
        "2",
        "--out",
        data,
    ]));
    let typo = work.path().join("idnode-dta");
    let typo_s = typo.to_str().unwrap();
    let err = stderr(&idnode(&[
        "import",
        "--offline",
        "--data-dir",
        typo_s,
        data,
    ]));
    assert!(
        err.contains(typo_s) && err.contains("holds no node store") && err.contains("--create"),
        "{err}"
    );
    assert!(!typo.exists(), "nothing is created");
    let out = stdout(&idnode(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        typo_s,
        data,
        "--json",
    ]));
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["registered"], 20, "{r}");
    // Now it is a node directory: no --create needed.
    let out = stdout(&idnode(&[
        "import",
        "--offline",
        "--data-dir",
        typo_s,
        data,
        "--json",
    ]));
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["already_present"], 20, "{r}");
}

/// No cause said twice in a row in an error line ("tcp connect error: tcp connect error").
fn assert_no_repeats(err: &str) {
    let parts: Vec<&str> = err.trim().split(": ").collect();
    for w in parts.windows(2) {
        assert_ne!(w[0], w[1], "repeated in {err:?}");
    }
}

/// `--node` takes HOST:PORT; another scheme gets what to write; an unreachable node's error
/// says each cause once; a node whose upstream fails is not called unavailable itself.
#[test]
fn client_errors_say_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    // Its upstream (top-level node) is a closed port: forwarded resolutions fail.
    let node = serve_with(dir.path(), "http", &["--upstream", "http://127.0.0.1:1"]);
    let host_port = node.url.trim_start_matches("http://");
    const ID: &str = "88.101.5/BAT-2024-000001";
    let out = stdout(&idnode(&["resolve", ID, "--node", host_port]));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    // Several servers (a replicated site's): a closed one is passed over.
    let list = format!("127.0.0.1:1,{host_port}");
    let out = stdout(&idnode(&["resolve", ID, "--node", &list]));
    assert!(out.starts_with(&format!("{ID}\n")), "{out}");
    let err = stderr(&idnode(&[
        "resolve",
        ID,
        "--node",
        &format!("grpc://{host_port}"),
    ]));
    assert!(err.contains(&format!("write http://{host_port}")), "{err}");
    assert_no_repeats(&err);

    let err = stderr(&idnode(&["resolve", "88.101.5/X", "--node", "127.0.0.1:1"]));
    assert!(
        err.contains("cannot reach the node at http://127.0.0.1:1: ")
            && err.contains("is `idnode serve` running"),
        "{err}"
    );
    assert_no_repeats(&err);

    // Forwarded: the node answers UNAVAILABLE because its upstream is down.
    let err = stderr(&idnode(&["resolve", "88.102.3/X", "--node", &node.url]));
    assert!(
        err.contains(&format!(
            "unavailable (answered by the node at {})",
            node.url
        )),
        "{err}"
    );
    assert!(
        !err.contains("cannot reach") && !err.contains("is unavailable"),
        "the node itself is up: {err}"
    );
    node.stop();
}

/// Logs written to a file or a pipe carry no colour escape codes.
#[test]
fn logs_to_a_file_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    // An upstream that is down makes the node log a warning (the heartbeat fails).
    let node = serve_logged(
        &dir.path().join("data"),
        "http",
        &["--no-seed", "--upstream", "http://127.0.0.1:1"],
        std::fs::File::create(&log).unwrap().into(),
    );
    node.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WARN") && text.contains("heartbeat failed"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "escape codes in {text:?}");
}

/// `import --help` describes the input formats instead of naming a code module.
#[test]
fn import_help_describes_the_formats() {
    let out = stdout(&idnode(&["import", "--help"]));
    for part in [
        "JSON Lines",
        "\"identifier\": \"88.101.5/BAT-1\"",
        "identifier,index,type,data[,ttl[,classification]]",
        "--create",
    ] {
        assert!(out.contains(part), "{part:?} missing from:\n{out}");
    }
    assert!(!out.contains("idnode::") && !out.contains("src/"), "{out}");
}

#[test]
fn values_are_classified_with_a_domain_and_risk_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    let token_file = dir.path().join("tokens/88.101.5.token");
    let token_file = token_file.to_str().unwrap();
    let register = |classify: &str| {
        idnode(&[
            "register",
            "88.101.5/CLI-RISK",
            "--value",
            "1:URL:https://example.cn/risk",
            "--value",
            "2:recipe:secret",
            "--classify",
            classify,
            "--node",
            &node.url,
            "--token-file",
            token_file,
        ])
    };
    let refused = stderr(&register("2:public:rd:high"));
    assert!(refused.contains("high risk → private"), "{refused}");
    let bad = stderr(&register("2:private:lab"));
    assert!(bad.contains("data domain \"lab\""), "{bad}");
    stdout(&register("2:private:rd:high"));
    let json: serde_json::Value = serde_json::from_str(&stdout(&idnode(&[
        "get",
        "88.101.5/CLI-RISK",
        "--node",
        &node.url,
        "--token-file",
        token_file,
        "--json",
    ])))
    .unwrap();
    let recipe = &json["values"][1];
    assert_eq!(
        (
            &recipe["domain"],
            &recipe["risk"],
            &recipe["classification"]
        ),
        (
            &serde_json::json!("rd"),
            &serde_json::json!("high"),
            &serde_json::json!("private")
        ),
        "{json}"
    );
    node.stop();
}
