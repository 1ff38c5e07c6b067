//! `idnode top-level ...`: run the mock national top-level node, manage its delegation
//! table, read its statistics.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::canonical::canonical_prefix;
use super::connect::Connection;
use super::record_print::show_record;
use idnode::api::grpc::pb;
use idnode::toplevel::TopLevelConfig;
use idnode::upstream::ForwardConfig;

#[derive(Subcommand)]
pub enum TopLevelCommand {
    /// Run a top-level node (delegations seeded with a Hubei-like province on first start).
    Serve {
        /// TOML file with the node's `[limits]` (connections, requests in flight, per-client
        /// rate, timeouts) and `[grpc]` `addr` and `max_message_bytes`; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (RocksDB, admin token, seeded node tokens).
        #[arg(long, default_value = "./idnode-toplevel")]
        data_dir: PathBuf,
        /// gRPC listen address. Default 127.0.0.1:7100.
        #[arg(long)]
        grpc_addr: Option<String>,
        /// Registration goal the statistics measure progress against.
        #[arg(long, default_value_t = idnode::toplevel::DEFAULT_GOAL)]
        goal: i64,
        /// Seconds secondary nodes may cache a referral.
        #[arg(long, default_value_t = 300)]
        referral_ttl: u32,
        /// Seconds between the heartbeats nodes are asked for (3 missed = not live).
        #[arg(long, default_value_t = 30)]
        heartbeat_interval: u32,
        /// Mint a new top-level admin token.
        #[arg(long)]
        reset_admin_token: bool,
        /// TLS certificate and key (PEM); with --client-ca, nodes must present a certificate
        /// signed by that CA (mutual TLS).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
        #[arg(long)]
        client_ca: Option<PathBuf>,
    },
    /// The delegation table.
    #[command(subcommand)]
    Delegation(DelegationCommand),
    /// Registrations and resolutions per node and in total, with progress toward the goal.
    Stats {
        #[command(flatten)]
        conn: Connection,
    },
    /// Back up the running top-level node (its admin token) into DEST on its machine;
    /// restore with `idnode restore`.
    Backup {
        dest: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Which node serves a prefix.
    Locate {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Resolve through the top-level node (recursive, public values).
    Resolve {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum DelegationCommand {
    /// Delegate a node prefix to a secondary node; prints the node token once.
    Add {
        node_prefix: String,
        node_id: String,
        name: String,
        /// The node's gRPC URL (optional: nodes announce it themselves).
        #[arg(long, default_value = "")]
        grpc: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// The delegation table with liveness.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove a delegation and its node tokens.
    Remove {
        node_prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: TopLevelCommand) -> anyhow::Result<()> {
    match cmd {
        TopLevelCommand::Serve {
            config: config_file,
            data_dir,
            grpc_addr,
            goal,
            referral_ttl,
            heartbeat_interval,
            reset_admin_token,
            tls_cert,
            tls_key,
            client_ca,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(idnode::tls::ServerTls {
                    cert,
                    key,
                    client_ca,
                }),
                (None, None) => None,
                _ => anyhow::bail!("--tls-cert and --tls-key go together"),
            };
            let file = idnode::config::read_toplevel_file(config_file.as_deref())?;
            let limits = idnode::config::TopLevelLimits::resolve(&file)?;
            let grpc_addr = grpc_addr
                .or(file.grpc.addr)
                .unwrap_or_else(|| "127.0.0.1:7100".to_owned());
            let addr: std::net::SocketAddr = grpc_addr
                .parse()
                .with_context(|| format!("grpc address {grpc_addr:?}"))?;
            if goal <= 0 {
                anyhow::bail!("--goal must be positive");
            }
            let config = TopLevelConfig {
                referral_ttl,
                heartbeat_interval: heartbeat_interval.max(1),
                goal,
                ..Default::default()
            };
            // RocksDB's open blocks: off the async workers, like all store work.
            let dir = data_dir.clone();
            let top = idnode::blocking::run(move || {
                idnode::node::toplevel::open(&dir, config, 64 << 20, reset_admin_token)
            })
            .await??;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding gRPC on {addr}"))?;
            let local = listener.local_addr()?;
            println!("top-level admin token: {}", top.admin_token_file.display());
            let shutdown = tokio_util::sync::CancellationToken::new();
            let signalled = crate::signals(shutdown.clone())?;
            if let Some(n) = top.seeded {
                println!(
                    "seeded {n} delegations; node tokens in {}",
                    top.node_token_dir.display()
                );
            }
            println!(
                "idnode top-level node serving {} delegations on grpc://{local}, data in {}",
                top.top.nodes().len(),
                data_dir.display()
            );
            tokio::spawn(signalled);
            idnode::node::toplevel::serve(
                &top,
                ForwardConfig::default(),
                &limits,
                listener,
                tls.as_ref(),
                shutdown,
                std::time::Duration::from_secs(10),
            )
            .await?;
            Ok(())
        }
        TopLevelCommand::Delegation(d) => delegation(d).await,
        TopLevelCommand::Backup { dest, conn } => {
            super::backup::backup(&conn.connect().await?, &dest, true).await
        }
        TopLevelCommand::Stats { conn } => {
            let c = conn.connect().await?;
            let s = c
                .toplevel()
                .get_stats(pb::GetStatsRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let nodes: Vec<_> = s
                    .per_node
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "node_prefix": n.node_prefix, "node_id": n.node_id, "live": n.live,
                            "registered": n.registered, "last_report": n.last_report,
                            "resolutions": n.resolutions.iter().map(|r| serde_json::json!({
                                "interface": r.interface, "local": r.local, "forwarded": r.forwarded,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                return c.print_json(&serde_json::json!({
                    "registered": s.registered, "goal": s.goal, "progress": s.progress,
                    "nodes": s.nodes, "live_nodes": s.live_nodes, "resolutions": s.resolutions,
                    "per_node": nodes,
                }));
            }
            println!(
                "registered {} of goal {} ({:.6} %), {} of {} nodes live, {} resolutions reported",
                s.registered,
                s.goal,
                s.progress * 100.0,
                s.live_nodes,
                s.nodes,
                s.resolutions
            );
            for n in s.per_node {
                let resolved: u64 = n.resolutions.iter().map(|r| r.local + r.forwarded).sum();
                println!(
                    "  {:<8} {:<36} {:<5} {:>12} registered {:>10} resolved",
                    n.node_prefix,
                    n.node_id,
                    if n.live { "live" } else { "-" },
                    n.registered,
                    resolved
                );
            }
            Ok(())
        }
        TopLevelCommand::Locate { prefix, conn } => {
            let c = conn.connect().await?;
            let r = c
                .toplevel()
                .locate(pb::LocateRequest { prefix })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let e = r.endpoints.clone().unwrap_or_default();
            if c.json() {
                c.print_json(&serde_json::json!({
                    "node_prefix": r.node_prefix, "node_id": r.node_id, "node_name": r.node_name,
                    "grpc": e.grpc, "dns": e.dns, "http": e.http, "ttl": r.ttl,
                    "servers": servers_json(&r.servers),
                }))
            } else {
                println!(
                    "{} served by {} ({}) at {} (ttl {} s)",
                    r.node_prefix,
                    r.node_id,
                    r.node_name,
                    grpc_list(&r.servers),
                    r.ttl
                );
                Ok(())
            }
        }
        TopLevelCommand::Resolve { identifier, conn } => {
            let c = conn.connect().await?;
            let r = c
                .toplevel()
                .resolve(pb::ResolveRequest {
                    identifier,
                    ..Default::default()
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            show_record(&c, &r.identifier, r.values)
        }
    }
}

/// A node's servers as JSON: name, endpoints, liveness.
fn servers_json(servers: &[pb::Server]) -> serde_json::Value {
    servers
        .iter()
        .map(|s| {
            let e = s.endpoints.clone().unwrap_or_default();
            serde_json::json!({
                "name": s.name, "grpc": e.grpc, "dns": e.dns, "http": e.http,
                "live": s.live, "last_heartbeat": s.last_heartbeat,
            })
        })
        .collect()
}

/// The servers' gRPC URLs, live ones first, comma-separated (a site's servers), or "-".
fn grpc_list(servers: &[pb::Server]) -> String {
    let urls: Vec<String> = servers
        .iter()
        .filter_map(|s| s.endpoints.as_ref().map(|e| e.grpc.clone()))
        .filter(|g| !g.is_empty())
        .collect();
    match urls.is_empty() {
        true => "-".into(),
        false => urls.join(","),
    }
}

async fn delegation(cmd: DelegationCommand) -> anyhow::Result<()> {
    match cmd {
        DelegationCommand::Add {
            node_prefix,
            node_id,
            name,
            grpc,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .toplevel()
                .add_delegation(pb::AddDelegationRequest {
                    node_prefix,
                    node_id,
                    name,
                    endpoints: Some(pb::Endpoints {
                        grpc,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let n = r.delegation.ok_or_else(|| anyhow!("empty answer"))?;
            if c.json() {
                c.print_json(&serde_json::json!({ "node_prefix": n.node_prefix, "node_id": n.node_id, "token": r.token }))
            } else {
                println!(
                    "{} delegated to {}\nnode token (shown once): {}",
                    n.node_prefix, n.node_id, r.token
                );
                Ok(())
            }
        }
        DelegationCommand::List { conn } => {
            let c = conn.connect().await?;
            let r = c
                .toplevel()
                .list_delegations(pb::ListDelegationsRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let all: Vec<_> = r
                    .delegations
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "node_prefix": n.node_prefix, "node_id": n.node_id, "name": n.name,
                            "grpc": n.endpoints.clone().unwrap_or_default().grpc,
                            "live": n.live, "last_heartbeat": n.last_heartbeat,
                            "servers": servers_json(&n.servers),
                        })
                    })
                    .collect();
                return c.print_json(&all);
            }
            for n in r.delegations {
                println!(
                    "{:<8} {:<36} {:<5} {:<24} {}",
                    n.node_prefix,
                    n.node_id,
                    if n.live { "live" } else { "-" },
                    grpc_list(&n.servers),
                    n.name
                );
            }
            Ok(())
        }
        DelegationCommand::Remove { node_prefix, conn } => {
            let c = conn.connect().await?;
            c.toplevel()
                .remove_delegation(pb::RemoveDelegationRequest {
                    node_prefix: node_prefix.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!(
                "removed the delegation of {}",
                canonical_prefix(&node_prefix)
            );
            Ok(())
        }
    }
}
