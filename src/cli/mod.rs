//! Client commands: talk to a running node over gRPC, print for people or, with `--json`,
//! for scripts.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod bulk;
pub mod connect;
pub mod toplevel;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;

pub(crate) use connect::{Client, Connection};

use idnode::api::grpc::pb;
use idnode::dataset::RecordJson;
use idnode::record::Value;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Resolve an identifier (anonymous callers see public values only).
    Resolve {
        identifier: String,
        /// Only values of this type (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only the value at this index (repeatable).
        #[arg(long = "index")]
        indexes: Vec<u32>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Register identifiers: from --value flags, or every record of a JSON / JSON Lines file.
    Register {
        /// The identifier (with --value).
        identifier: Option<String>,
        /// A value as INDEX:TYPE:DATA, e.g. 1:URL:https://example.cn (repeatable).
        #[arg(long = "value")]
        values: Vec<String>,
        /// A JSON record, a JSON array of records, or JSON Lines (the record format: `idnode
        /// import --help`).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change a record: --value adds or replaces by index, --remove deletes an index;
    /// --replace swaps all values for the --value list.
    Update {
        identifier: String,
        /// A value as INDEX:TYPE:DATA (repeatable).
        #[arg(long = "value")]
        values: Vec<String>,
        /// Index to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<u32>,
        /// Replace every value with the --value list.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a whole record, non-public values included (owner or admin).
    Get {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete an identifier.
    Delete {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List identifiers with exactly this prefix.
    List {
        prefix: String,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Continue after this cursor (printed at the end of a page).
        #[arg(long, default_value = "")]
        cursor: String,
        /// Follow cursors to the end.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Connection,
    },
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
    /// Back up the running node (admin token): its stores and key files, into DEST on the
    /// node's machine. Incremental: repeat into the same DEST.
    Backup {
        dest: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Rebuild a data directory from a backup directory (the node must not be running on
    /// it; the directory must hold no store yet).
    Restore {
        src: PathBuf,
        /// The data directory to create (required unless --list).
        #[arg(long, required_unless_present = "list")]
        data_dir: Option<PathBuf>,
        /// The backup number (default: the latest).
        #[arg(long)]
        backup_id: Option<u32>,
        /// List the backups in SRC instead.
        #[arg(long)]
        list: bool,
    },
    /// Enterprise accounts (admin token).
    #[command(subcommand)]
    Enterprise(EnterpriseCommand),
    /// Industry metadata templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Partner read access to PARTNER-classified values.
    #[command(subcommand)]
    Grant(audit::GrantCommand),
    /// The tamper-evident operation log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a synthetic, reproducible data set (JSON Lines or CSV).
    Gen(bulk::GenArgs),
    /// Import a data set: online over BatchCreate, or --offline into a stopped node.
    Import(bulk::ImportArgs),
    /// Load generator: throughput and latency percentiles of a running node.
    Bench(Box<bench::BenchArgs>),
    /// Print two `idnode bench` reports side by side.
    BenchCompare { a: PathBuf, b: PathBuf },
    /// Reference servers and loaders for side-by-side figures.
    #[command(subcommand, hide = true)]
    BenchReference(bench::ReferenceCommand),
}

#[derive(Subcommand)]
pub enum EnterpriseCommand {
    /// Allocate an enterprise prefix; prints its token once.
    Create {
        prefix: String,
        name: String,
        /// GB/T 4754 industry code, e.g. C3670.
        #[arg(long, default_value = "")]
        industry: String,
        /// The token expires after this many seconds (default: never).
        #[arg(long)]
        token_ttl: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Every enterprise with its registered count.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new token; prints it once.
    Rotate {
        prefix: String,
        /// Keep the newest previous token valid too.
        #[arg(long)]
        keep_previous: bool,
        /// The new token expires after this many seconds (default: never).
        #[arg(long)]
        token_ttl: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set an enterprise's quota (0 or absent: unlimited).
    Quota {
        prefix: String,
        #[arg(long, default_value_t = 0)]
        max_registrations: u64,
        #[arg(long, default_value_t = 0)]
        max_per_day: u64,
        #[arg(long, default_value_t = 0)]
        max_rps: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// An enterprise's quota and usage.
    Usage {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke every token of an enterprise.
    Revoke {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Register templates from a JSON file (one object or an array; see seeds/templates.json).
    Register {
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one template.
    Get {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List templates (optionally with exactly this prefix).
    List {
        prefix: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Parses `INDEX:TYPE:DATA`.
fn parse_value_flag(s: &str) -> anyhow::Result<pb::Value> {
    let mut parts = s.splitn(3, ':');
    let (Some(i), Some(t), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--value {s:?}: expected INDEX:TYPE:DATA");
    };
    let index: u32 = i
        .parse()
        .map_err(|_| anyhow!("--value {s:?}: index {i:?} is not a number"))?;
    Ok(pb::Value {
        index,
        r#type: t.to_owned(),
        data: d.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn record_to_pb(r: &RecordJson) -> anyhow::Result<pb::Record> {
    let record = r
        .to_record()
        .map_err(|e| anyhow!("{}: {e}", r.identifier))?;
    Ok(pb::Record {
        identifier: r.identifier.clone(),
        values: record.values.into_iter().map(value_to_pb).collect(),
    })
}

fn value_to_pb(v: Value) -> pb::Value {
    idnode::api::grpc::convert::value_to(v)
}

fn value_from_pb(v: pb::Value) -> anyhow::Result<Value> {
    idnode::api::grpc::convert::value_from(v).map_err(|e| anyhow!("{e}"))
}

/// Reads records from a JSON object, a JSON array, or JSON Lines.
fn read_records(path: &PathBuf) -> anyhow::Result<Vec<RecordJson>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .with_context(|| format!("parsing {}", path.display()));
    }
    if let Ok(one) = serde_json::from_str::<RecordJson>(trimmed) {
        return Ok(vec![one]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), n + 1))
        })
        .collect()
}

fn print_values(identifier: &str, values: &[Value]) {
    println!("{identifier}");
    if values.is_empty() {
        println!("  (no values visible)");
    }
    for v in values {
        let data = match v.data_str() {
            Some(s) if v.format != idnode::record::Format::Binary => s.to_owned(),
            _ => format!("<{} bytes>", v.data.len()),
        };
        let private = if v.permissions.public_read {
            ""
        } else {
            "  [non-public]"
        };
        println!("  {:>5}  {:<22} {data}{private}", v.index, v.kind);
    }
}

/// The canonical text of an identifier, as the node stores it (prefix lower-cased): what a
/// command prints for the identifier it acted on. Parsed without length limits (the node's
/// are configurable); input that does not parse is returned as given.
pub(crate) fn canonical_identifier(s: &str) -> String {
    idnode::identifier::Identifier::parse_with(s, &NO_LIMITS)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| s.to_owned())
}

/// The canonical text of a prefix (lower-cased), as [`canonical_identifier`].
pub(crate) fn canonical_prefix(s: &str) -> String {
    idnode::identifier::Prefix::parse_with(s, &NO_LIMITS)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| s.to_owned())
}

/// A prefix or an identifier (a grant's scope), canonical.
pub(crate) fn canonical_scope(s: &str) -> String {
    if s.contains('/') {
        canonical_identifier(s)
    } else {
        canonical_prefix(s)
    }
}

const NO_LIMITS: idnode::identifier::Limits = idnode::identifier::Limits {
    max_identifier_bytes: usize::MAX,
    max_prefix_bytes: usize::MAX,
};

pub(crate) fn show_record(
    c: &Client,
    identifier: &str,
    values: Vec<pb::Value>,
) -> anyhow::Result<()> {
    let values: Vec<Value> = values
        .into_iter()
        .map(value_from_pb)
        .collect::<Result<_, _>>()?;
    if c.json() {
        c.print_json(&RecordJson::from_record(identifier, &values))
    } else {
        print_values(identifier, &values);
        Ok(())
    }
}

pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Resolve {
            identifier,
            types,
            indexes,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .resolver()
                .resolve(pb::ResolveRequest {
                    identifier,
                    types,
                    indexes,
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            show_record(&c, &r.identifier, r.values)
        }
        ClientCommand::Register {
            identifier,
            values,
            file,
            conn,
        } => {
            let records = match (identifier, file) {
                (Some(id), None) => {
                    if values.is_empty() {
                        bail!("give at least one --value INDEX:TYPE:DATA, or --file");
                    }
                    vec![pb::Record {
                        identifier: id,
                        values: values
                            .iter()
                            .map(|v| parse_value_flag(v))
                            .collect::<Result<_, _>>()?,
                    }]
                }
                (None, Some(path)) => read_records(&path)?
                    .iter()
                    .map(record_to_pb)
                    .collect::<Result<_, _>>()?,
                _ => bail!("give an identifier with --value flags, or --file (not both)"),
            };
            let c = conn.connect().await?;
            register(&c, records).await
        }
        ClientCommand::Update {
            identifier,
            values,
            remove,
            replace,
            conn,
        } => {
            let values: Vec<pb::Value> = values
                .iter()
                .map(|v| parse_value_flag(v))
                .collect::<Result<_, _>>()?;
            let c = conn.connect().await?;
            let change = if replace {
                if !remove.is_empty() {
                    bail!("--replace takes --value flags only");
                }
                pb::update_request::Change::Replace(pb::ValueList { values })
            } else {
                // Add or modify by index, as the current record dictates.
                let current = c
                    .registry()
                    .get(pb::GetRequest {
                        identifier: identifier.clone(),
                    })
                    .await
                    .map_err(|s| c.fail(s))?
                    .into_inner()
                    .record
                    .unwrap_or_default();
                let (modify, add) = values
                    .into_iter()
                    .partition(|v| current.values.iter().any(|x| x.index == v.index));
                pb::update_request::Change::Edit(pb::ValueEdit {
                    add,
                    modify,
                    remove,
                })
            };
            let r = c
                .registry()
                .update(pb::UpdateRequest {
                    identifier,
                    change: Some(change),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .record
                .unwrap_or_default();
            show_record(&c, &r.identifier, r.values)
        }
        ClientCommand::Get { identifier, conn } => {
            let c = conn.connect().await?;
            let r = c
                .registry()
                .get(pb::GetRequest { identifier })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .record
                .unwrap_or_default();
            show_record(&c, &r.identifier, r.values)
        }
        ClientCommand::Delete { identifier, conn } => {
            let c = conn.connect().await?;
            c.registry()
                .delete(pb::DeleteRequest {
                    identifier: identifier.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            let identifier = canonical_identifier(&identifier);
            if c.json() {
                c.print_json(&serde_json::json!({ "deleted": identifier }))
            } else {
                println!("deleted {identifier}");
                Ok(())
            }
        }
        ClientCommand::List {
            prefix,
            page_size,
            mut cursor,
            all,
            conn,
        } => {
            let c = conn.connect().await?;
            let mut everything = Vec::new();
            loop {
                let page = c
                    .registry()
                    .list(pb::ListRequest {
                        prefix: prefix.clone(),
                        page_size,
                        cursor: cursor.clone(),
                    })
                    .await
                    .map_err(|s| c.fail(s))?
                    .into_inner();
                if !c.json() {
                    for id in &page.identifiers {
                        println!("{id}");
                    }
                }
                everything.extend(page.identifiers);
                cursor = page.next_cursor;
                if cursor.is_empty() || !all {
                    break;
                }
            }
            if c.json() {
                c.print_json(
                    &serde_json::json!({ "identifiers": everything, "next_cursor": cursor }),
                )
            } else {
                if !cursor.is_empty() {
                    println!("-- more: --cursor {cursor:?}");
                }
                Ok(())
            }
        }
        ClientCommand::Counts { conn } => {
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
                    .map(|p| (p.prefix.clone(), p.count.into()))
                    .collect();
                c.print_json(
                    &serde_json::json!({ "node_total": r.node_total, "prefixes": prefixes }),
                )
            } else {
                println!("node total: {}", r.node_total);
                for p in r.prefixes {
                    println!("  {:<20} {}", p.prefix, p.count);
                }
                Ok(())
            }
        }
        ClientCommand::Info { conn } => {
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
        ClientCommand::DnsName { identifier, zone } => {
            let id = idnode::identifier::Identifier::parse(&identifier)?;
            let zone = hickory_proto::rr::Name::from_ascii(&zone)
                .map_err(|e| anyhow!("--zone {zone:?}: {e}"))?;
            let name = idnode::api::dns::naming::encode(&id, &zone)?;
            println!("{}", name.to_ascii());
            Ok(())
        }
        ClientCommand::Enterprise(e) => enterprise(e).await,
        ClientCommand::Template(t) => template(t).await,
        ClientCommand::Grant(g) => audit::grant(g).await,
        ClientCommand::Audit(a) => audit::run(a).await,
        ClientCommand::Backup { dest, conn } => {
            backup::backup(&conn.connect().await?, &dest, false).await
        }
        ClientCommand::Restore {
            src,
            data_dir,
            backup_id,
            list,
        } => backup::restore(&src, data_dir.as_deref(), backup_id, list),
        ClientCommand::Gen(g) => bulk::gen(g),
        ClientCommand::Import(i) => bulk::import(i).await,
        ClientCommand::Bench(b) => bench::bench(*b).await,
        ClientCommand::BenchCompare { a, b } => bench::compare(&a, &b),
        ClientCommand::BenchReference(r) => bench::reference(r).await,
    }
}

async fn register(c: &Client, records: Vec<pb::Record>) -> anyhow::Result<()> {
    if records.len() == 1 {
        let record = records.into_iter().next().expect("one record");
        let id = canonical_identifier(&record.identifier);
        let r = c
            .registry()
            .create(pb::CreateRequest {
                record: Some(record),
            })
            .await
            .map_err(|s| c.fail(s))?
            .into_inner();
        let state = if r.created {
            "registered"
        } else {
            "already registered (identical)"
        };
        return if c.json() {
            c.print_json(&serde_json::json!({ "identifier": id, "created": r.created }))
        } else {
            println!("{state} {id}");
            Ok(())
        };
    }
    let total = records.len();
    let chunks: Vec<pb::BatchCreateRequest> = records
        .chunks(1000)
        .map(|c| pb::BatchCreateRequest {
            records: c.to_vec(),
        })
        .collect();
    let mut stream = c
        .registry()
        .batch_create(tokio_stream::iter(chunks))
        .await
        .map_err(|s| c.fail(s))?
        .into_inner();
    let (mut created, mut present, mut failed) = (0, 0, Vec::new());
    while let Some(resp) = stream.message().await.map_err(|s| c.fail(s))? {
        for r in resp.results {
            match (r.code, r.created) {
                (0, true) => created += 1,
                (0, false) => present += 1,
                _ => failed.push(r),
            }
        }
    }
    if c.json() {
        let failures: Vec<_> = failed
            .iter()
            .map(|f| serde_json::json!({ "position": f.position, "identifier": f.identifier, "code": f.code, "message": f.message }))
            .collect();
        c.print_json(&serde_json::json!({ "total": total, "created": created, "already_present": present, "failed": failures }))?;
    } else {
        println!(
            "{total} records: {created} registered, {present} already present, {} failed",
            failed.len()
        );
        for f in &failed {
            println!("  #{} {}: {}", f.position, f.identifier, f.message);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} of {total} records failed", failed.len())
    }
}

async fn enterprise(cmd: EnterpriseCommand) -> anyhow::Result<()> {
    match cmd {
        EnterpriseCommand::Create {
            prefix,
            name,
            industry,
            token_ttl,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .create_enterprise(pb::CreateEnterpriseRequest {
                    prefix,
                    name,
                    industry_code: industry,
                    token_ttl_secs: token_ttl.unwrap_or(0),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let e = r.enterprise.unwrap_or_default();
            if c.json() {
                c.print_json(
                    &serde_json::json!({ "prefix": e.prefix, "name": e.name, "token": r.token }),
                )
            } else {
                println!(
                    "enterprise {} ({}) created\ntoken (shown once): {}",
                    e.prefix, e.name, r.token
                );
                Ok(())
            }
        }
        EnterpriseCommand::List { conn } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .list_enterprises(pb::ListEnterprisesRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let all: Vec<_> = r.enterprises.iter().map(|e| serde_json::json!({
                    "prefix": e.prefix, "name": e.name, "industry_code": e.industry_code,
                    "registered": e.registered, "active_tokens": e.active_tokens, "created_at": e.created_at,
                })).collect();
                c.print_json(&all)
            } else {
                for e in r.enterprises {
                    println!(
                        "{:<14} {:>10}  {:<6} {}",
                        e.prefix, e.registered, e.industry_code, e.name
                    );
                }
                Ok(())
            }
        }
        EnterpriseCommand::Rotate {
            prefix,
            keep_previous,
            token_ttl,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .rotate_token(pb::RotateTokenRequest {
                    prefix: prefix.clone(),
                    keep_previous,
                    token_ttl_secs: token_ttl.unwrap_or(0),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let prefix = canonical_prefix(&prefix);
            if c.json() {
                c.print_json(&serde_json::json!({ "prefix": prefix, "token": r.token }))
            } else {
                println!("new token of {prefix} (shown once): {}", r.token);
                Ok(())
            }
        }
        EnterpriseCommand::Quota {
            prefix,
            max_registrations,
            max_per_day,
            max_rps,
            conn,
        } => {
            let c = conn.connect().await?;
            c.admin()
                .set_quota(pb::SetQuotaRequest {
                    prefix: prefix.clone(),
                    quota: Some(pb::Quota {
                        max_registrations,
                        max_registrations_per_day: max_per_day,
                        max_requests_per_second: max_rps,
                    }),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!("quota of {} set", canonical_prefix(&prefix));
            Ok(())
        }
        EnterpriseCommand::Usage { prefix, conn } => {
            let c = conn.connect().await?;
            let u = c
                .admin()
                .get_usage(pb::GetUsageRequest { prefix })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let q = u.quota.unwrap_or_default();
            let limit = |v: u64| {
                if v == 0 {
                    "unlimited".to_owned()
                } else {
                    v.to_string()
                }
            };
            if c.json() {
                return c.print_json(&serde_json::json!({
                    "prefix": u.prefix, "registered": u.registered, "registered_today": u.registered_today,
                    "max_registrations": q.max_registrations, "max_registrations_per_day": q.max_registrations_per_day,
                    "max_requests_per_second": q.max_requests_per_second,
                }));
            }
            println!(
                "{}: {} registered (limit {}), {} today (limit {}), request rate limit {}",
                u.prefix,
                u.registered,
                limit(q.max_registrations),
                u.registered_today,
                limit(q.max_registrations_per_day),
                limit(q.max_requests_per_second as u64)
            );
            Ok(())
        }
        EnterpriseCommand::Revoke { prefix, conn } => {
            let c = conn.connect().await?;
            c.admin()
                .revoke_tokens(pb::RevokeTokensRequest {
                    prefix: prefix.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!("revoked every token of {}", canonical_prefix(&prefix));
            Ok(())
        }
    }
}

async fn template(cmd: TemplateCommand) -> anyhow::Result<()> {
    use idnode::api::grpc::convert::{template_from, template_to};
    use idnode::template::Template;
    match cmd {
        TemplateCommand::Register { file, conn } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let templates: Vec<Template> = if text.trim_start().starts_with('[') {
                serde_json::from_str(&text)?
            } else {
                vec![serde_json::from_str(&text)?]
            };
            let c = conn.connect().await?;
            for t in templates {
                let id = canonical_identifier(&t.identifier);
                let r = c
                    .registry()
                    .register_template(pb::RegisterTemplateRequest {
                        template: Some(template_to(&t)),
                    })
                    .await
                    .map_err(|s| c.fail(s))?
                    .into_inner();
                println!(
                    "{} {id}",
                    if r.created {
                        "registered"
                    } else {
                        "already registered"
                    }
                );
            }
            Ok(())
        }
        TemplateCommand::Get { identifier, conn } => {
            let c = conn.connect().await?;
            let t = c
                .registry()
                .get_template(pb::GetTemplateRequest { identifier })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .template
                .unwrap_or_default();
            let t = template_from(t).map_err(|e| anyhow!("{e}"))?;
            if c.json() {
                c.print_json(&t)
            } else {
                println!(
                    "{} {} ({}, v{})",
                    t.identifier, t.name, t.industry_code, t.version
                );
                for a in &t.attributes {
                    println!(
                        "  {:<24} {:<9} {:<8} {}",
                        a.key,
                        a.value_type.name(),
                        if a.required { "required" } else { "" },
                        a.display_name
                    );
                }
                Ok(())
            }
        }
        TemplateCommand::List { prefix, conn } => {
            let c = conn.connect().await?;
            let r = c
                .registry()
                .list_templates(pb::ListTemplatesRequest {
                    prefix: prefix.unwrap_or_default(),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let all: Vec<Template> = r
                    .templates
                    .into_iter()
                    .map(|t| template_from(t).map_err(|e| anyhow!("{e}")))
                    .collect::<Result<_, _>>()?;
                c.print_json(&all)
            } else {
                for t in r.templates {
                    println!("{:<28} {:<6} {}", t.identifier, t.industry_code, t.name);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_flags() {
        let v = parse_value_flag("1:URL:https://example.cn:8443/x").unwrap();
        assert_eq!(v.index, 1);
        assert_eq!(v.r#type, "URL");
        assert_eq!(v.data, b"https://example.cn:8443/x");
        assert!(parse_value_flag("x:URL:y").is_err());
        assert!(parse_value_flag("1:URL").is_err());
    }
}
