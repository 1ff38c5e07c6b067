//! `idnode counts`, `idnode info`: what a running node holds and serves; `idnode dns-name`:
//! the DNS name a node's DNS interface answers for an identifier (computed here, no node
//! asked).

use anyhow::anyhow;
use clap::Subcommand;

use super::connect::Connection;
use idnode::api::grpc::pb;

#[derive(Subcommand)]
pub enum InfoCommand {
    /// Registered counts (node total and the prefixes the token owns).
    Counts {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the DNS name of an identifier (for dig and other DNS clients).
    DnsName {
        identifier: String,
        /// The node's DNS zone.
        #[arg(long, default_value = idnode::config::DEFAULT_DNS_ZONE)]
        zone: String,
    },
    /// The node's prefix, name and totals.
    Info {
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: InfoCommand) -> anyhow::Result<()> {
    match cmd {
        InfoCommand::Counts { conn } => {
            let c = conn.connect().await?;
            let r = c
                .registry()
                .get_counts(pb::GetCountsRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let prefixes: serde_json::Map<String, serde_json::Value> = r
                    .prefixes
                    .iter()
                    .map(|p| (p.prefix.clone(), p.registered.into()))
                    .collect();
                c.print_json(
                    &serde_json::json!({ "node_registered": r.node_registered, "prefixes": prefixes }),
                )
            } else {
                println!("registered on the node: {}", r.node_registered);
                for p in r.prefixes {
                    println!("  {:<20} {}", p.prefix, p.registered);
                }
                Ok(())
            }
        }
        InfoCommand::Info { conn } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .get_node_info(pb::GetNodeInfoRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                c.print_json(&serde_json::json!({
                    "node_prefix": r.node_prefix, "node_name": r.node_name,
                    "registered": r.registered, "enterprises": r.enterprises, "version": r.version,
                    "resolved_local": r.resolved_local, "resolved_forwarded": r.resolved_forwarded,
                    "cache_hits": r.cache_hits, "stale_answers": r.stale_answers,
                    "upstream_calls": r.upstream_calls, "remote_calls": r.remote_calls,
                    "upstream": r.upstream,
                }))
            } else {
                println!(
                    "node prefix: {}\nname:        {}\nregistered:  {}\nenterprises: {}\nversion:     {}",
                    r.node_prefix, r.node_name, r.registered, r.enterprises, r.version
                );
                println!(
                    "resolved:    {} local, {} forwarded ({} cache hits, {} stale)\nupstream:    {} ({} calls; {} calls to other nodes)",
                    r.resolved_local,
                    r.resolved_forwarded,
                    r.cache_hits,
                    r.stale_answers,
                    if r.upstream.is_empty() { "none" } else { &r.upstream },
                    r.upstream_calls,
                    r.remote_calls
                );
                Ok(())
            }
        }
        InfoCommand::DnsName { identifier, zone } => {
            let id = idnode::identifier::Identifier::parse(&identifier)?;
            let zone = hickory_proto::rr::Name::from_ascii(&zone)
                .map_err(|e| anyhow!("--zone {zone:?}: {e}"))?;
            let name = idnode::api::dns::naming::encode(&id, &zone)?;
            println!("{}", name.to_ascii());
            Ok(())
        }
    }
}
