//! `idnode gen` and `idnode import`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::connect::Connection;
use idnode::api::grpc::pb;
use idnode::bulk::gen::{self, GenConfig};
use idnode::bulk::{self, Format};

#[derive(Subcommand)]
pub enum BulkCommand {
    /// Write a synthetic, reproducible data set (JSON Lines or CSV).
    Gen(GenArgs),
    /// Import a data set: online over BatchRegister, or --offline into a stopped node.
    Import(ImportArgs),
    /// Compact a stopped node's store (after a large online import): every table is
    /// rewritten into its last level; prints the bytes of its table files before and after.
    Compact(CompactArgs),
}

#[derive(Args)]
pub struct CompactArgs {
    /// The node's data directory (the node stopped).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: BulkCommand) -> anyhow::Result<()> {
    match cmd {
        BulkCommand::Gen(g) => gen(g),
        BulkCommand::Import(i) => import(i).await,
        BulkCommand::Compact(c) => compact(c),
    }
}

fn compact(a: CompactArgs) -> anyhow::Result<()> {
    use idnode::store::rocks::{RocksConfig, RocksStore};
    let db = a.data_dir.join("db");
    if !db.join("CURRENT").is_file() {
        bail!(
            "{} holds no node store ({} is missing)",
            a.data_dir.display(),
            db.join("CURRENT").display()
        );
    }
    let started = std::time::Instant::now();
    let store = RocksStore::open(&RocksConfig::new(&db))
        .map_err(|e| anyhow!("opening {} (is the node stopped?): {e}", db.display()))?;
    let total = |s: &RocksStore| s.table_bytes().iter().map(|(_, bytes)| bytes).sum::<u64>();
    let before = total(&store);
    store
        .compact()
        .map_err(|e| anyhow!("compacting {}: {e}", db.display()))?;
    let after = total(&store);
    let seconds = started.elapsed().as_secs_f64();
    let tables: serde_json::Map<String, serde_json::Value> = store
        .table_bytes()
        .into_iter()
        .filter(|(_, bytes)| *bytes > 0)
        .map(|(t, bytes)| (t.name().to_owned(), bytes.into()))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bytes_before": before, "bytes_after": after, "seconds": seconds, "tables": tables})
        );
    } else {
        println!(
            "compacted {}: table files {before} → {after} bytes in {seconds:.1} s",
            db.display()
        );
        for (name, bytes) in &tables {
            println!("  {name}: {bytes} bytes");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct GenArgs {
    /// Number of records.
    #[arg(long)]
    pub count: u64,
    /// Output file (JSON Lines, or CSV when it ends in .csv).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Enterprise prefixes the records spread over.
    #[arg(long, default_value_t = 1000)]
    pub enterprises: u32,
    #[arg(long, default_value = "88.101")]
    pub node_prefix: String,
    /// Also write a zone file with the same data as TXT records (for Knot DNS).
    #[arg(long)]
    pub zone_file: Option<PathBuf>,
    /// Also write a dnsperf query file (one `<name> TXT` line per record).
    #[arg(long)]
    pub dnsperf_queries: Option<PathBuf>,
    /// Zone for --zone-file and --dnsperf-queries.
    #[arg(long, default_value = "id.example.")]
    pub zone: String,
}

pub fn gen(a: GenArgs) -> anyhow::Result<()> {
    let config = GenConfig {
        seed: a.seed,
        node_prefix: a.node_prefix.clone(),
        enterprises: a.enterprises,
    };
    let format = Format::of(&a.out);
    let sink: Box<dyn Write> = if a.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?)
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let zone = hickory_proto::rr::Name::from_ascii(&a.zone).map_err(|e| anyhow!("--zone: {e}"))?;
    let mut zone_out = match &a.zone_file {
        Some(p) => {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(p)?);
            writeln!(w, "$ORIGIN {}\n$TTL 86400\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1", zone.to_ascii())?;
            Some(w)
        }
        None => None,
    };
    let mut queries = match &a.dnsperf_queries {
        Some(p) => Some(BufWriter::with_capacity(1 << 20, File::create(p)?)),
        None => None,
    };
    if format == Format::Csv {
        writeln!(out, "identifier,index,type,data,ttl,classification")?;
    }
    let bar = progress(a.count, "records");
    for i in 0..a.count {
        let r = gen::record(&config, i);
        match format {
            Format::JsonLines => {
                serde_json::to_writer(&mut out, &r)?;
                out.write_all(b"\n")?;
            }
            Format::Csv => {
                for v in &r.values {
                    writeln!(
                        out,
                        "{},{},{},{},,",
                        bulk::csv_field(&r.identifier),
                        v.index,
                        bulk::csv_field(&v.value_type),
                        bulk::csv_field(&v.data)
                    )?;
                }
            }
        }
        if zone_out.is_some() || queries.is_some() {
            let id = idnode::identifier::Identifier::parse(&r.identifier)?;
            let name = idnode::api::dns::naming::encode(&id, &zone)?;
            if let Some(z) = zone_out.as_mut() {
                let record = r.to_record().map_err(|e| anyhow!("{e}"))?;
                let mut lines = String::new();
                idnode::api::dns::zonefile::write_txt_records(&mut lines, &name, &record.values);
                z.write_all(lines.as_bytes())?;
            }
            if let Some(q) = queries.as_mut() {
                writeln!(q, "{} TXT", name.to_ascii())?;
            }
        }
        if i % 10_000 == 0 {
            bar.set_position(i);
        }
    }
    bar.finish_and_clear();
    out.flush()?;
    if let Some(mut z) = zone_out {
        z.flush()?;
    }
    if let Some(mut q) = queries {
        q.flush()?;
    }
    if a.out.as_os_str() == "-" {
        eprintln!("wrote {} records", a.count);
    } else {
        println!("wrote {} records to {}", a.count, a.out.display());
    }
    Ok(())
}

fn progress(total: u64, unit: &str) -> ProgressBar {
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `idnode import --help`: the input formats, for people without the sources at hand.
const IMPORT_FORMATS: &str = "\
Input formats (chosen by the file name: .csv is CSV, anything else JSON Lines; - is standard input):

JSON Lines: one record (the JSON of `idnode get --json`) per line:
  {\"identifier\": \"88.101.5/BAT-1\", \"values\": [{\"index\": 1, \"type\": \"URL\", \"data\": \"https://example.cn/p/1\"}]}
  Value fields: index and type (required), data, format (string, json or binary: data in base64),
  ttl (seconds, default 86400), permissions (four bits: admin_read admin_write public_read
  public_write, default 1110), classification (public, partner or private), references
  ([{\"identifier\": ..., \"index\": ...}]).

CSV: one row per value, identifier,index,type,data[,ttl[,classification]]; the rows of one
  identifier consecutive; a header row starting with `identifier` is skipped; fields holding
  a comma, a quote or a newline are quoted with \" (\"\" inside quotes).

Records that fail go to FILE.failures.jsonl with their position; an online import saves its
progress in FILE.progress for --resume. README.md, \"Bulk data and load\", has examples.";

#[derive(Args)]
#[command(after_long_help = IMPORT_FORMATS)]
pub struct ImportArgs {
    /// JSON Lines or CSV (formats: `idnode import --help`).
    pub file: PathBuf,
    /// Import into a stopped node's data directory with SST ingestion.
    #[arg(long)]
    pub offline: bool,
    /// With --offline: the node's data directory; it must hold a node's store, unless
    /// --create.
    #[arg(long, default_value = "./idnode-data")]
    pub data_dir: PathBuf,
    /// With --offline: create the data directory's store if there is none (a new node).
    #[arg(long, requires = "offline")]
    pub create: bool,
    /// With --offline --create: the node prefix of the new data directory.
    #[arg(long, default_value = "88.101")]
    pub node_prefix: String,
    /// With --offline: memory for sorting before runs spill to disk, MiB (at least 1).
    #[arg(long, default_value_t = 1024)]
    pub memory_mb: usize,
    /// Records per BatchRegister message (the node's default `max_batch_items`; at 10M
    /// records 2000 imported ~15 % faster than 1000, 5000 no faster).
    #[arg(long, default_value_t = 2000)]
    pub chunk: usize,
    /// BatchRegister messages in flight.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Continue after the position recorded in the progress file.
    #[arg(long)]
    pub resume: bool,
    /// Where failures go (JSON Lines). Default: FILE.failures.jsonl.
    #[arg(long)]
    pub failures: Option<PathBuf>,
    #[command(flatten)]
    pub conn: Connection,
}

/// Counts bytes read, for a progress bar over the file.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An input file's records, its size (0: unknown), and a counter of the bytes read so far.
type Input = (
    bulk::Reader<BufReader<Counting<Box<dyn Read + Send>>>>,
    u64,
    Arc<AtomicU64>,
);

/// `-` is standard input (JSON Lines), e.g. `idnode gen --out - ... | idnode import -`.
fn open_input(path: &Path) -> anyhow::Result<Input> {
    let (file, size): (Box<dyn Read + Send>, u64) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata()?.len();
        (Box::new(file), size)
    };
    let read = Arc::new(AtomicU64::new(0));
    let reader = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: file,
            read: Arc::clone(&read),
        },
    );
    Ok((bulk::Reader::new(reader, Format::of(path)), size, read))
}

/// Where failures go unless --failures says: beside the input (`stdin.failures.jsonl` for `-`).
fn failures_default(input: &Path) -> PathBuf {
    let mut p = if input.as_os_str() == "-" {
        "stdin".into()
    } else {
        input.as_os_str().to_owned()
    };
    p.push(".failures.jsonl");
    PathBuf::from(p)
}

fn progress_file(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".progress");
    PathBuf::from(p)
}

pub async fn import(a: ImportArgs) -> anyhow::Result<()> {
    if a.offline {
        return offline(a);
    }
    if a.resume && a.file.as_os_str() == "-" {
        anyhow::bail!("--resume needs an input file, not standard input");
    }
    let failures_path = a
        .failures
        .clone()
        .unwrap_or_else(|| failures_default(&a.file));
    let progress_path = progress_file(&a.file);
    let skip: u64 = if a.resume {
        std::fs::read_to_string(&progress_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let (reader, size, bytes) = open_input(&a.file)?;
    let c = a.conn.connect().await?;
    let chunk = a.chunk.clamp(1, 2000);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::BatchRegisterRequest>(a.in_flight.max(1));
    // Reading and parsing run on a blocking thread; bad lines are failures too.
    let (bad_tx, mut bad_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
    let producer = tokio::task::spawn_blocking(move || -> u64 {
        let mut position = 0u64;
        let mut records = Vec::with_capacity(chunk);
        for item in reader {
            let here = position;
            position += 1;
            if here < skip {
                continue;
            }
            match item {
                Ok(r) => match r.to_record() {
                    Ok(rec) => records.push(pb::Record {
                        identifier: r.identifier,
                        values: rec
                            .values
                            .into_iter()
                            .map(idnode::api::grpc::convert::value_to)
                            .collect(),
                    }),
                    Err(e) => {
                        // Keep positions aligned: send an empty record the node rejects.
                        let _ = bad_tx.send((here, e.to_string()));
                        records.push(pb::Record {
                            identifier: r.identifier,
                            values: Vec::new(),
                        });
                    }
                },
                Err(e) => {
                    let _ = bad_tx.send((here, e));
                    records.push(pb::Record {
                        identifier: String::new(),
                        values: Vec::new(),
                    });
                }
            }
            if records.len() == chunk {
                let msg = pb::BatchRegisterRequest {
                    records: std::mem::replace(&mut records, Vec::with_capacity(chunk)),
                };
                if tx.blocking_send(msg).is_err() {
                    return position;
                }
            }
        }
        if !records.is_empty() {
            let _ = tx.blocking_send(pb::BatchRegisterRequest { records });
        }
        position
    });
    let mut stream = c
        .registry()
        .batch_register(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| c.fail(s))?
        .into_inner();
    let mut failures = BufWriter::new(if a.resume {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&failures_path)?
    } else {
        File::create(&failures_path)?
    });
    let bar = progress(size, "bytes");
    let started = Instant::now();
    let (mut registered, mut present, mut failed) = (0u64, 0u64, 0u64);
    let mut acknowledged = skip;
    let mut bad_lines: HashMap<u64, String> = HashMap::new();
    let mut last_save = Instant::now();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(s) => {
                failures.flush()?;
                std::fs::write(&progress_path, acknowledged.to_string())?;
                bail!("the node ended the import at position {acknowledged}: {}; re-run with --resume", s.message());
            }
        };
        while let Ok((pos, e)) = bad_rx.try_recv() {
            bad_lines.insert(pos, e);
        }
        for r in msg.results {
            let position = skip + r.position;
            match (r.code, r.registered) {
                (0, true) => registered += 1,
                (0, false) => present += 1,
                _ => {
                    failed += 1;
                    let message = bad_lines.remove(&position).unwrap_or(r.message);
                    serde_json::to_writer(
                        &mut failures,
                        &serde_json::json!({
                            "position": position, "identifier": r.identifier, "code": r.code, "message": message,
                        }),
                    )?;
                    failures.write_all(b"\n")?;
                }
            }
            acknowledged = position + 1;
        }
        bar.set_position(bytes.load(Ordering::Relaxed));
        bar.set_message(format!("{registered} registered, {failed} failed"));
        if last_save.elapsed() > Duration::from_secs(1) {
            std::fs::write(&progress_path, acknowledged.to_string())?;
            failures.flush()?;
            last_save = Instant::now();
        }
    }
    let total = producer.await?;
    bar.finish_and_clear();
    failures.flush()?;
    std::fs::write(&progress_path, acknowledged.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    let done = registered + present + failed;
    let summary = serde_json::json!({
        "records": total, "skipped": skip, "registered": registered, "already_present": present,
        "failed": failed, "seconds": secs, "records_per_second": done as f64 / secs.max(1e-9),
        "acknowledged_position": acknowledged, "failures_file": failures_path,
    });
    if c.json() {
        println!("{summary}");
    } else {
        println!(
            "{done} records in {secs:.1} s ({:.0}/s): {registered} registered, {present} already present, {failed} failed (see {}); acknowledged through position {acknowledged}",
            done as f64 / secs.max(1e-9),
            failures_path.display()
        );
    }
    Ok(())
}

fn offline(a: ImportArgs) -> anyhow::Result<()> {
    use idnode::store::rocks::{RocksConfig, RocksStore};
    use idnode::store::{SharedStore, Store, Table};
    let db = a.data_dir.join("db");
    // A mistyped --data-dir must not become a new, empty node holding the import.
    if !a.create && !db.join("CURRENT").is_file() {
        bail!(
            "{} holds no node store ({} is missing): give the data directory of a node started at least once, or --create to make a new one",
            a.data_dir.display(),
            db.join("CURRENT").display()
        );
    }
    let mut rc = RocksConfig::new(&db);
    rc.block_cache_bytes = 256 << 20;
    let store = RocksStore::open(&rc)
        .map_err(|e| anyhow!("opening {} (is the node stopped?): {e}", db.display()))?;
    let prefix = store
        .get(Table::Meta, b"node_prefix")
        .map_err(|e| anyhow!("{e}"))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or(a.node_prefix.clone());
    let store: SharedStore = Arc::new(store);
    let config = idnode::resolver::CoreConfig::new(idnode::identifier::Prefix::parse(&prefix)?);
    let core = idnode::resolver::Core::open(store, config, None)?;
    let (reader, size, bytes) = open_input(&a.file)?;
    let bar = progress(size, "bytes");
    let tmp = a.data_dir.join("import-tmp");
    let report = idnode::bulk::offline::import(
        &core,
        reader,
        a.memory_mb.max(1) << 20,
        &tmp,
        &a.file.display().to_string(),
        |_| bar.set_position(bytes.load(Ordering::Relaxed)),
    )?;
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&tmp);
    let failures_path = a
        .failures
        .clone()
        .unwrap_or_else(|| failures_default(&a.file));
    let mut f = BufWriter::new(File::create(&failures_path)?);
    for (position, identifier, message) in &report.failures {
        serde_json::to_writer(
            &mut f,
            &serde_json::json!({ "position": position, "identifier": identifier, "message": message }),
        )?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    core.store().flush().map_err(|e| anyhow!("{e}"))?;
    let summary = serde_json::json!({
        "records": report.read, "registered": report.imported, "already_present": report.already_present,
        "failed": report.failures.len(), "seconds": report.seconds,
        "records_per_second": report.read as f64 / report.seconds.max(1e-9),
        "spilled_runs": report.spilled_runs, "spilled_bytes": report.spilled_bytes,
        "spilled_raw_bytes": report.spilled_raw_bytes, "failures_file": failures_path,
    });
    if a.conn.json {
        println!("{summary}");
    } else {
        println!(
            "{} records in {:.1} s ({:.0}/s, {} sorted runs spilled, {} MiB on disk): {} registered, {} already present, {} failed (see {})",
            report.read,
            report.seconds,
            report.read as f64 / report.seconds.max(1e-9),
            report.spilled_runs,
            report.spilled_bytes >> 20,
            report.imported,
            report.already_present,
            report.failures.len(),
            failures_path.display()
        );
    }
    Ok(())
}

/// Identifiers of a JSON Lines / CSV data set (for load generators).
pub fn identifiers(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut out = Vec::new();
    match Format::of(path) {
        Format::JsonLines => {
            #[derive(serde::Deserialize)]
            struct Id {
                identifier: String,
            }
            for line in reader.lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    out.push(serde_json::from_str::<Id>(&line)?.identifier);
                }
            }
        }
        Format::Csv => {
            for r in bulk::Reader::new(reader, Format::Csv) {
                out.push(r.map_err(|e| anyhow!(e))?.identifier);
            }
        }
    }
    Ok(out)
}
