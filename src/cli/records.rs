//! `idnode resolve`, `register`, `update`, `get`, `delete`, `list`: records and pages of
//! identifiers, through a running node's resolver and registry services.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;

use super::canonical::canonical_identifier;
use super::connect::{Client, Connection};
use super::record_print::show_record;
use idnode::api::grpc::pb;
use idnode::dataset::RecordJson;
use idnode::record::Value;

#[derive(Subcommand)]
pub enum RecordCommand {
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
        /// Classify a --value: INDEX:VISIBILITY[:DOMAIN[:RISK]], e.g. 2:private:rd:high
        /// (visibility public, partner or private; domain rd, production, operations,
        /// management or external; risk low, medium or high; repeatable).
        #[arg(long = "classify")]
        classify: Vec<String>,
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
        /// Classify a --value: INDEX:VISIBILITY[:DOMAIN[:RISK]] (as for register).
        #[arg(long = "classify")]
        classify: Vec<String>,
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

/// Applies `--classify INDEX:VISIBILITY[:DOMAIN[:RISK]]` flags to the `--value` values,
/// through the record file format's names (one vocabulary with files and Handle JSON).
fn classify(values: &mut [pb::Value], flags: &[String]) -> anyhow::Result<()> {
    for flag in flags {
        let parts: Vec<&str> = flag.split(':').collect();
        if !(2..=4).contains(&parts.len()) {
            bail!("--classify {flag:?}: expected INDEX:VISIBILITY[:DOMAIN[:RISK]]");
        }
        let index: u32 = parts[0]
            .parse()
            .map_err(|_| anyhow!("--classify {flag:?}: index {:?} is not a number", parts[0]))?;
        let value = values
            .iter_mut()
            .find(|v| v.index == index)
            .ok_or_else(|| anyhow!("--classify {flag:?}: no --value has index {index}"))?;
        let named = idnode::dataset::ValueJson {
            index,
            value_type: value.r#type.clone(),
            data: String::from_utf8_lossy(&value.data).into_owned(),
            format: None,
            ttl: None,
            permissions: None,
            classification: Some(parts[1].to_owned()),
            references: Vec::new(),
            timestamp: None,
            domain: parts
                .get(2)
                .filter(|d| !d.is_empty())
                .map(|d| (*d).to_owned()),
            risk: parts
                .get(3)
                .filter(|r| !r.is_empty())
                .map(|r| (*r).to_owned()),
        }
        .to_value()
        .map_err(|e| anyhow!("--classify {flag:?}: {e}"))?;
        let converted = idnode::api::grpc::convert::value_to(named);
        value.classification = converted.classification;
        value.permissions = converted.permissions;
        value.domain = converted.domain;
        value.risk = converted.risk;
    }
    Ok(())
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

pub async fn run(cmd: RecordCommand) -> anyhow::Result<()> {
    match cmd {
        RecordCommand::Resolve {
            identifier,
            types,
            indexes,
            conn,
        } => {
            let c = conn.connect().await?;
            let req = pb::ResolveRequest {
                identifier,
                types,
                indexes,
            };
            let r = c
                .call(|| {
                    let (mut stub, req) = (c.resolver(), req.clone());
                    async move { stub.resolve(req).await }
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            show_record(&c, &r.identifier, r.values)
        }
        RecordCommand::Register {
            identifier,
            values,
            classify: flags,
            file,
            conn,
        } => {
            let records = match (identifier, file) {
                (Some(id), None) => {
                    if values.is_empty() {
                        bail!("give at least one --value INDEX:TYPE:DATA, or --file");
                    }
                    let mut values: Vec<pb::Value> = values
                        .iter()
                        .map(|v| parse_value_flag(v))
                        .collect::<Result<_, _>>()?;
                    classify(&mut values, &flags)?;
                    vec![pb::Record {
                        identifier: id,
                        values,
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
        RecordCommand::Update {
            identifier,
            values,
            classify: flags,
            remove,
            replace,
            conn,
        } => {
            let mut values: Vec<pb::Value> = values
                .iter()
                .map(|v| parse_value_flag(v))
                .collect::<Result<_, _>>()?;
            classify(&mut values, &flags)?;
            let c = conn.connect().await?;
            let change = if replace {
                if !remove.is_empty() {
                    bail!("--replace takes --value flags only");
                }
                pb::update_request::Change::Replace(pb::ValueList { values })
            } else {
                // Put by index: the node adds or replaces, as the record has the index.
                pb::update_request::Change::Edit(pb::ValueEdit {
                    put: values,
                    remove,
                    ..Default::default()
                })
            };
            let req = pb::UpdateRequest {
                identifier,
                change: Some(change),
            };
            let r = c
                .call(|| {
                    let (mut stub, req) = (c.registry(), req.clone());
                    async move { stub.update(req).await }
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .record
                .unwrap_or_default();
            show_record(&c, &r.identifier, r.values)
        }
        RecordCommand::Get { identifier, conn } => {
            let c = conn.connect().await?;
            let req = pb::GetRequest { identifier };
            let r = c
                .call(|| {
                    let (mut stub, req) = (c.registry(), req.clone());
                    async move { stub.get(req).await }
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .record
                .unwrap_or_default();
            show_record(&c, &r.identifier, r.values)
        }
        RecordCommand::Delete { identifier, conn } => {
            let c = conn.connect().await?;
            let req = pb::DeleteRequest {
                identifier: identifier.clone(),
            };
            c.call(|| {
                let (mut stub, req) = (c.registry(), req.clone());
                async move { stub.delete(req).await }
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
        RecordCommand::List {
            prefix,
            page_size,
            mut cursor,
            all,
            conn,
        } => {
            let c = conn.connect().await?;
            let mut everything = Vec::new();
            loop {
                let req = pb::ListRequest {
                    prefix: prefix.clone(),
                    page_size,
                    cursor: cursor.clone(),
                };
                let page = c
                    .call(|| {
                        let (mut stub, req) = (c.registry(), req.clone());
                        async move { stub.list(req).await }
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
    }
}

async fn register(c: &Client, records: Vec<pb::Record>) -> anyhow::Result<()> {
    if records.len() == 1 {
        let record = records.into_iter().next().expect("one record");
        let id = canonical_identifier(&record.identifier);
        let req = pb::RegisterRequest {
            record: Some(record),
        };
        let r = c
            .call(|| {
                let (mut stub, req) = (c.registry(), req.clone());
                async move { stub.register(req).await }
            })
            .await
            .map_err(|s| c.fail(s))?
            .into_inner();
        let state = if r.registered {
            "registered"
        } else {
            "already registered (identical)"
        };
        return if c.json() {
            c.print_json(&serde_json::json!({ "identifier": id, "registered": r.registered }))
        } else {
            println!("{state} {id}");
            Ok(())
        };
    }
    let total = records.len();
    let chunks: Vec<pb::BatchRegisterRequest> = records
        .chunks(1000)
        .map(|c| pb::BatchRegisterRequest {
            records: c.to_vec(),
        })
        .collect();
    let mut stream = c
        .registry()
        .batch_register(tokio_stream::iter(chunks))
        .await
        .map_err(|s| c.fail(s))?
        .into_inner();
    let (mut registered, mut present, mut failed) = (0, 0, Vec::new());
    while let Some(resp) = stream.message().await.map_err(|s| c.fail(s))? {
        for r in resp.results {
            match (r.code, r.registered) {
                (0, true) => registered += 1,
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
        c.print_json(&serde_json::json!({ "total": total, "registered": registered, "already_present": present, "failed": failures }))?;
    } else {
        println!(
            "{total} records: {registered} registered, {present} already present, {} failed",
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
