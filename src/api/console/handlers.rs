//! The console's JSON endpoints (`/console/api/...`): decode, call the core with the
//! caller the bearer token names, encode. Errors are `{"error": kind, "message": ...}`
//! with the HTTP status of the Handle API's mapping (`http::convert::failure`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};

use super::convert::{
    self, BatchIn, BatchRow, EnterpriseIn, GrantIn, QuotaIn, RecordIn, RotateIn, ValuesIn,
};
use super::Console;
use crate::api::http::convert as http_convert;
use crate::auth::{Caller, Quota};
use crate::bulk::{Format, Reader};
use crate::error::Error;
use crate::identifier::{Identifier, Prefix};
use crate::record::TEMPLATE_TYPE;
use crate::resolver::{
    Core, Filter, Interface, Presented, RegisterOutcome, Requester, Scope, Update,
};

/// Most identifiers one listing page shows.
const MAX_PAGE: usize = 200;

/// A failed console request.
pub struct Failure {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl Failure {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            error,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let (status, _) = http_convert::failure(&e);
        Failure::new(status, e.kind.name(), e.message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "message": self.message });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

type Answer = Result<Response, Failure>;

fn ok(body: Json) -> Answer {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

/// Counts a console request in the metrics (interface `http`, op `console_<name>`).
async fn observed(
    c: &Console,
    op: &'static str,
    work: impl std::future::Future<Output = Answer>,
) -> Answer {
    let started = Instant::now();
    let r = work.await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(f) => f.error,
    };
    c.telemetry.request("http", op, outcome, started.elapsed());
    r
}

/// The caller the request's bearer token names; without one, `Unauthenticated` (the
/// console's signed-in pages need a token; public pages never call this).
///
/// Writes run in [`acting`], so that they carry the credential: applied in a site after
/// that credential was revoked, they are refused on every server alike.
async fn caller(
    c: &Console,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Result<Requester, Failure> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Failure::from(Error::unauthenticated(
                "sign in: this page needs an enterprise or admin token",
            ))
        })?;
    let presented = Presented {
        token: Some(token),
        client: Some(client.ip()),
    };
    let asked = presented.clone();
    let caller = c.core.blocking(move |core| core.caller(&asked)).await?;
    Ok(Requester::new(caller, &presented, None))
}

/// Runs a write on the blocking pool on behalf of `who`'s request.
async fn acting<R: Send + 'static>(
    c: &Console,
    who: Requester,
    f: impl FnOnce(&Core, &Requester) -> crate::error::Result<R> + Send + 'static,
) -> crate::error::Result<R> {
    c.core
        .blocking(move |core| who.acting(|| f(core, &who)))
        .await
}

/// The prefix an enterprise works under: its own; the admin names one (`prefix=`).
fn own_prefix(core: &Core, caller: &Caller, q: &[(String, String)]) -> Result<Prefix, Failure> {
    match caller {
        Caller::Enterprise(p) => Ok(p.clone()),
        _ => {
            let text = http_convert::all(q, "prefix")
                .next()
                .ok_or_else(|| invalid("prefix is required"))?;
            Ok(core.parse_prefix(text)?)
        }
    }
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the body is not the expected JSON: {e}")))
}

fn query_id(core: &Core, q: &[(String, String)]) -> Result<Identifier, Failure> {
    let text = http_convert::all(q, "id")
        .next()
        .ok_or_else(|| invalid("id is required"))?;
    Ok(core.parse_identifier(text)?)
}

/// The template a record's values name (`TEMPLATE_ID`), if it is registered here.
fn template_of(
    core: &Core,
    values: &[crate::record::Value],
) -> Option<Arc<crate::template::Template>> {
    let text = values
        .iter()
        .find(|v| v.value_type == TEMPLATE_TYPE)?
        .data_str()?;
    let id = core.parse_identifier(text.trim()).ok()?;
    core.template(&id).ok()
}

/// `GET /console/api/resolve?id=`: the public values of any identifier, resolved like every
/// other resolution (forwarded through the top-level node when another node serves it).
pub async fn resolve(State(c): State<Arc<Console>>, RawQuery(raw): RawQuery) -> Answer {
    observed(&c, "console_resolve", async {
        let q = http_convert::query_pairs(raw.as_deref());
        let id = query_id(&c.core, &q)?;
        let forwarded = !c.core.serves_identifier(&id);
        let resolved = c
            .core
            .resolve_routed(
                Presented::anonymous(),
                id.clone(),
                Filter::default(),
                0,
                Interface::Http,
            )
            .await?;
        let values = resolved.values;
        let (values, template) = c
            .core
            .blocking(move |core| {
                let template = template_of(core, &values);
                Ok((values, template))
            })
            .await?;
        ok(json!({
            "identifier": id.to_string(),
            "link": c.link(&id),
            "route": if forwarded { "forwarded" } else { "local" },
            "node_prefix": c.core.config().node_prefix.to_string(),
            "template": template.as_ref().map(|t| json!({ "identifier": t.identifier, "name": t.name })),
            "values": convert::values_out(&values, template.as_deref()),
        }))
    })
    .await
}

/// `GET /console/api/templates`: every template registered here (public).
pub async fn templates(State(c): State<Arc<Console>>) -> Answer {
    let templates = c.core.blocking(|core| core.list_templates(None)).await?;
    ok(json!({ "templates": templates }))
}

/// `GET /console/api/session`: who the token is, and the limits the page works within.
pub async fn session(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let (role, prefix, name, industry_code) = match &who.caller {
        Caller::Admin => (
            "admin",
            c.core.config().node_prefix.to_string(),
            c.core.config().node_name.clone(),
            String::new(),
        ),
        Caller::Enterprise(p) => {
            let e = c.core.enterprise(p);
            (
                "enterprise",
                p.to_string(),
                e.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
                e.map(|e| e.industry_code).unwrap_or_default(),
            )
        }
        Caller::Node(_) | Caller::Anonymous => {
            return Err(Failure::from(Error::denied(
                "the console takes an enterprise or admin token",
            )))
        }
    };
    ok(json!({
        "role": role,
        "prefix": prefix,
        "name": name,
        "industry_code": industry_code,
        "node_prefix": c.core.config().node_prefix.to_string(),
        "max_body_bytes": c.max_body_bytes,
        "max_batch_items": c.core.config().max_batch_items,
    }))
}

/// `GET /console/api/records?q=&cursor=&size=` (`prefix=` for the admin): own identifiers,
/// a page at a time, optionally only suffixes starting with `q`.
pub async fn records(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    observed(&c, "console_list", async {
        let who = caller(&c, &headers, client).await?;
        let q = http_convert::query_pairs(raw.as_deref());
        let prefix = own_prefix(&c.core, &who, &q)?;
        let starts = http_convert::all(&q, "q").next().unwrap_or("").to_owned();
        let cursor = http_convert::all(&q, "cursor").next().map(str::to_owned);
        let size = match http_convert::all(&q, "size").next() {
            Some(s) => s.parse().map_err(|_| invalid("size must be a number"))?,
            None => 20,
        };
        if !(1..=MAX_PAGE).contains(&size) {
            return Err(invalid(format!("size must be 1 to {MAX_PAGE}")));
        }
        let (listing, total) = c
            .core
            .blocking(move |core| {
                let listing = core.search(&who, &prefix, &starts, cursor.as_deref(), size)?;
                Ok((listing, core.listing_total(&who, &prefix)?))
            })
            .await?;
        let ids: Vec<String> = listing.identifiers.iter().map(|i| i.to_string()).collect();
        ok(json!({ "identifiers": ids, "next_cursor": listing.next_cursor, "total": total }))
    })
    .await
}

/// `GET /console/api/record?id=`: every value (owner or admin), with its classification.
pub async fn record(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    observed(&c, "console_get", async {
        let who = caller(&c, &headers, client).await?;
        let q = http_convert::query_pairs(raw.as_deref());
        let id = query_id(&c.core, &q)?;
        let target = id.clone();
        let (record, template) = c
            .core
            .blocking(move |core| {
                let record = core.get(&who, &target)?;
                let template = template_of(core, &record.values);
                Ok((record, template))
            })
            .await?;
        ok(json!({
            "identifier": id.to_string(),
            "link": c.link(&id),
            "template": template.as_ref().map(|t| json!({ "identifier": t.identifier, "name": t.name })),
            "values": convert::values_out(&record.values, template.as_deref()),
        }))
    })
    .await
}

/// `POST /console/api/record`: registers an identifier (the template form's values).
pub async fn register(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    observed(&c, "console_register", async {
        let who = caller(&c, &headers, client).await?;
        let input: RecordIn = body(&bytes)?;
        let id = c.core.parse_identifier(&input.identifier)?;
        let record = convert::record_in(&input.values)?;
        let target = id.clone();
        let outcome = acting(&c, who, move |core, who| core.register(who, target, record)).await?;
        let outcome = match outcome {
            RegisterOutcome::Registered => "registered",
            RegisterOutcome::AlreadyPresent => "already_present",
        };
        ok(json!({ "identifier": id.to_string(), "outcome": outcome }))
    })
    .await
}

/// `PUT /console/api/record?id=`: replaces every value of a record.
pub async fn replace(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    observed(&c, "console_update", async {
        let who = caller(&c, &headers, client).await?;
        let q = http_convert::query_pairs(raw.as_deref());
        let id = query_id(&c.core, &q)?;
        let input: ValuesIn = body(&bytes)?;
        let record = convert::record_in(&input.values)?;
        let target = id.clone();
        acting(&c, who, move |core, who| {
            core.update(who, &target, Update::Replace(record.values))
        })
        .await?;
        ok(json!({ "identifier": id.to_string(), "outcome": "updated" }))
    })
    .await
}

/// `DELETE /console/api/record?id=`.
pub async fn delete(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    observed(&c, "console_delete", async {
        let who = caller(&c, &headers, client).await?;
        let q = http_convert::query_pairs(raw.as_deref());
        let id = query_id(&c.core, &q)?;
        let target = id.clone();
        acting(&c, who, move |core, who| core.delete(who, &target)).await?;
        ok(json!({ "identifier": id.to_string(), "outcome": "deleted" }))
    })
    .await
}

/// `POST /console/api/batch`: one chunk of an uploaded CSV or JSON Lines file, read with
/// `idnode import`'s reader and registered with `Core::batch_register` (the good records of
/// each `max_batch_items` in one atomic write). One row per record or unreadable line,
/// with the line it starts on in the file.
pub async fn batch(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    observed(&c, "console_batch", async {
        let who = caller(&c, &headers, client).await?;
        let input: BatchIn = body(&bytes)?;
        let format = match input.format.as_str() {
            "csv" => Format::Csv,
            "jsonl" => Format::JsonLines,
            other => return Err(invalid(format!("format {other:?}: csv or jsonl"))),
        };
        let offset = input.first_line.max(1) - 1;
        let rows = acting(&c, who, move |core, who| {
            Ok(register_chunk(core, who, format, &input.text, offset))
        })
        .await?;
        let registered = rows.iter().filter(|r| r.outcome == "registered").count();
        let failed = rows.iter().filter(|r| r.outcome == "failed").count();
        ok(json!({ "rows": rows, "registered": registered, "failed": failed }))
    })
    .await
}

/// Reads `text` and registers its records in batches of `max_batch_items`. Blocking.
fn register_chunk(
    core: &Core,
    who: &Caller,
    format: Format,
    text: &str,
    offset: usize,
) -> Vec<BatchRow> {
    let mut reader = Reader::new(text.as_bytes(), format);
    let mut rows = Vec::new();
    // (row index, parsed item) of the batch being gathered.
    let mut pending: Vec<(usize, crate::resolver::BatchItem)> = Vec::new();
    let flush = |pending: &mut Vec<(usize, crate::resolver::BatchItem)>,
                 rows: &mut Vec<BatchRow>| {
        let (positions, items): (Vec<usize>, Vec<_>) = std::mem::take(pending).into_iter().unzip();
        for (i, r) in positions.into_iter().zip(core.batch_register(who, items)) {
            let row: &mut BatchRow = &mut rows[i];
            match r {
                Ok(RegisterOutcome::Registered) => row.outcome = "registered",
                Ok(RegisterOutcome::AlreadyPresent) => row.outcome = "already_present",
                Err(e) => row.error = Some(e.message),
            }
        }
    };
    while let Some(item) = reader.next() {
        let line = offset + reader.start_line();
        let mut row = BatchRow {
            line,
            identifier: String::new(),
            outcome: "failed",
            error: None,
        };
        match item {
            Err(e) => {
                // The reader's message starts "line N: " counting within the chunk.
                let message = match e.split_once(": ") {
                    Some((head, rest)) if head.starts_with("line ") => rest.to_owned(),
                    _ => e,
                };
                row.error = Some(message);
                rows.push(row);
            }
            Ok(json) => {
                row.identifier = json.identifier.clone();
                match convert::record_in(&json.values) {
                    Err(e) => {
                        row.error = Some(e.message);
                        rows.push(row);
                    }
                    Ok(record) => {
                        let id = core.parse_identifier(&json.identifier);
                        rows.push(row);
                        pending.push((rows.len() - 1, (id, record)));
                        if pending.len() >= core.config().max_batch_items {
                            flush(&mut pending, &mut rows);
                        }
                    }
                }
            }
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut rows);
    }
    rows
}

/// `GET /console/api/grants`: the grants on the enterprise's prefix.
pub async fn grants(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let q = http_convert::query_pairs(raw.as_deref());
    let prefix = own_prefix(&c.core, &who, &q)?;
    let grants = c
        .core
        .blocking(move |core| core.grants(&who, &prefix))
        .await?;
    let grants: Vec<Json> = grants
        .iter()
        .map(|g| json!({ "scope": g.scope, "grantee": g.grantee, "granted_at": g.granted_at }))
        .collect();
    ok(json!({ "grants": grants }))
}

/// `POST /console/api/grants` `{scope, grantee}`.
pub async fn grant(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let input: GrantIn = body(&bytes)?;
    acting(&c, who, move |core, who| {
        let scope = Scope::parse(core, input.scope.trim())?;
        let grantee = core.parse_prefix(input.grantee.trim())?;
        core.grant(who, &scope, &grantee)
    })
    .await?;
    ok(json!({ "outcome": "granted" }))
}

/// `DELETE /console/api/grants?scope=&grantee=`.
pub async fn revoke_grant(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let q = http_convert::query_pairs(raw.as_deref());
    let scope = http_convert::all(&q, "scope")
        .next()
        .unwrap_or("")
        .to_owned();
    let grantee = http_convert::all(&q, "grantee")
        .next()
        .unwrap_or("")
        .to_owned();
    acting(&c, who, move |core, who| {
        let scope = Scope::parse(core, &scope)?;
        let grantee = core.parse_prefix(&grantee)?;
        core.revoke_grant(who, &scope, &grantee)
    })
    .await?;
    ok(json!({ "outcome": "revoked" }))
}

fn quota_json(q: &Quota) -> Json {
    json!({
        "max_registrations": q.max_registrations,
        "max_registrations_per_day": q.max_registrations_per_day,
        "max_requests_per_second": q.max_requests_per_second,
    })
}

/// `GET /console/api/usage`: the enterprise's registrations against its quota.
pub async fn usage(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let q = http_convert::query_pairs(raw.as_deref());
    let prefix = own_prefix(&c.core, &who, &q)?;
    let u = c
        .core
        .blocking(move |core| core.usage(&who, &prefix))
        .await?;
    ok(json!({
        "prefix": u.prefix,
        "registered": u.registered,
        "registered_today": u.registered_today,
        "quota": quota_json(&u.quota),
    }))
}

/// `GET /console/api/dashboard` (admin): registrations (node, per enterprise, today, by
/// data domain × risk level),
/// the province's progress from the top-level node, resolutions per minute by interface
/// over the last hour, forwarding (cache hit ratio, upstream calls and failures).
pub async fn dashboard(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Answer {
    observed(&c, "console_dashboard", async {
        let who = caller(&c, &headers, client).await?;
        let (counts, today, enterprises, log_seq, classes) = c
            .core
            .blocking(move |core| {
                core.require_admin(&who)?;
                Ok((
                    core.counts(&who)?,
                    core.registered_today(&who)?,
                    core.list_enterprises(&who)?,
                    core.log_head().0,
                    core.classes(&who)?,
                ))
            })
            .await?;
        let classes: Vec<Json> = classes
            .into_iter()
            .map(|(d, r, n)| json!({ "domain": d.name(), "risk": r.name(), "registered": n }))
            .collect();
        let count_of = |prefix: &str, list: &[(String, i64)]| {
            list.iter().find(|(p, _)| p == prefix).map_or(0, |(_, n)| *n)
        };
        let per_enterprise: Vec<Json> = enterprises
            .iter()
            .map(|e| {
                json!({
                    "prefix": e.prefix,
                    "name": e.name,
                    "registered": count_of(&e.prefix, &counts.prefixes),
                    "today": count_of(&e.prefix, &today.prefixes),
                    "quota": quota_json(&e.quota),
                })
            })
            .collect();
        let federation = match c.reporter.federation().await {
            Ok(f) => json!({
                "registered": f.registered,
                "goal": f.goal,
                "progress": if f.goal > 0 { f.registered as f64 / f.goal as f64 } else { 0.0 },
                "nodes": f.nodes,
                "live_nodes": f.live_nodes,
                "resolutions": f.resolutions,
                "source": c.reporter.describe(),
            }),
            Err(e) => json!({ "error": e.message, "source": c.reporter.describe() }),
        };
        let minute = crate::auth::now().div_euclid(60);
        let rates: Vec<Json> = c
            .telemetry
            .resolutions_per_minute(minute)
            .into_iter()
            .map(|(interface, per_minute)| json!({ "interface": interface, "per_minute": per_minute }))
            .collect();
        let totals: Vec<Json> = Interface::ALL
            .iter()
            .map(|via| {
                let (local, forwarded) = c.core.resolutions().get(*via);
                json!({ "interface": via.name(), "local": local, "forwarded": forwarded })
            })
            .collect();
        let forwarding = c.core.remote().map(|remote| {
            let s = remote.stats();
            json!({
                "forwarded": s.forwarded,
                "cache_hits": s.cache_hits,
                "hit_ratio": if s.forwarded > 0 { s.cache_hits as f64 / s.forwarded as f64 } else { 0.0 },
                "stale_answers": s.stale_answers,
                "upstream_calls": s.upstream_calls,
                "remote_calls": s.remote_calls,
                "failures": s.failures,
                "upstream": remote.describe(),
            })
        });
        let config = c.core.config();
        ok(json!({
            "node": {
                "prefix": config.node_prefix.to_string(),
                "name": config.node_name,
                "version": env!("CARGO_PKG_VERSION"),
                "registered": counts.node_registered,
                "today": today.total,
                "enterprises": enterprises.len(),
                "log_seq": log_seq,
            },
            "enterprises": per_enterprise,
            "classes": classes,
            "federation": federation,
            "rates": { "minute": minute, "series": rates, "totals": totals },
            "forwarding": forwarding,
        }))
    })
    .await
}

/// `GET /console/api/enterprises` (admin).
pub async fn enterprises(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let list = c
        .core
        .blocking(move |core| core.list_enterprises(&who))
        .await?;
    let list: Vec<Json> = list
        .iter()
        .map(|e| {
            json!({
                "prefix": e.prefix,
                "name": e.name,
                "industry_code": e.industry_code,
                "created_at": e.created_at,
                "tokens": e.credential_ids.len(),
                "quota": quota_json(&e.quota),
            })
        })
        .collect();
    ok(json!({ "enterprises": list }))
}

/// `POST /console/api/enterprises` (admin): creates an enterprise; its token is in the
/// answer, once.
pub async fn create_enterprise(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let input: EnterpriseIn = body(&bytes)?;
    let (enterprise, token) = acting(&c, who, move |core, who| {
        let prefix = core.parse_prefix(input.prefix.trim())?;
        core.create_enterprise(who, &prefix, &input.name, input.industry_code.trim(), None)
    })
    .await?;
    ok(json!({ "prefix": enterprise.prefix, "name": enterprise.name, "token": token }))
}

/// `POST /console/api/enterprises/rotate` (admin, or the enterprise itself): a new token,
/// in the answer once.
pub async fn rotate(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let input: RotateIn = body(&bytes)?;
    let (prefix, token) = acting(&c, who, move |core, who| {
        let prefix = core.parse_prefix(input.prefix.trim())?;
        let token = core.rotate_token(who, &prefix, input.keep_previous, None)?;
        Ok((prefix, token))
    })
    .await?;
    ok(json!({ "prefix": prefix.to_string(), "token": token }))
}

/// `PUT /console/api/quota` (admin).
pub async fn quota(
    State(c): State<Arc<Console>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    let who = caller(&c, &headers, client).await?;
    let input: QuotaIn = body(&bytes)?;
    acting(&c, who, move |core, who| {
        let prefix = core.parse_prefix(input.prefix.trim())?;
        let quota = Quota {
            max_registrations: input.max_registrations,
            max_registrations_per_day: input.max_registrations_per_day,
            max_requests_per_second: input.max_requests_per_second,
        };
        core.set_quota(who, &prefix, quota)
    })
    .await?;
    ok(json!({ "outcome": "set" }))
}
