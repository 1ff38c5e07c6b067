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
    Command::new(BIN)
        .args(args)
        .env_remove("IDNODE_NODE")
        .env_remove("IDNODE_TOKEN")
        .output()
        .unwrap()
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
    assert_eq!(counts["node_total"], 101);
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
