//! Writes as commands: every change a client asks for becomes a [`Command`] (the caller,
//! the operation, and everything the server would otherwise take from its own clock or
//! random source), and one deterministic function, [`Core::apply`], turns a command into
//! the store change. A single process applies each command itself; a replicated site
//! ([`SharedLog`], implemented by `crate::site`) appends it to the site's log first, and
//! every server applies the log in order, so servers that applied the same commands hold the
//! same records, counts and operation log.

use std::cell::Cell;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Core, RegisterOutcome, Scope, Update};
use crate::auth::{self, Caller, Credential, Enterprise, Quota, Subject};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::{Identifier, Prefix};
use crate::record::{Record, Value};
use crate::store::{codec, Batch, Table};
use crate::template::Template;

/// Meta key of the last site log sequence applied to this store (u64, big-endian).
pub const SITE_APPLIED: &[u8] = b"site_applied";

/// A change a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Register {
        id: Identifier,
        record: Record,
    },
    /// Register, or replace the values of the record there (a Handle `PUT`).
    Put {
        id: Identifier,
        record: Record,
    },
    /// The items of one batch message that parsed (parse failures never leave the server).
    BatchRegister {
        items: Vec<(Identifier, Record)>,
    },
    Update {
        id: Identifier,
        update: Update,
    },
    Delete {
        id: Identifier,
    },
    CreateEnterprise {
        prefix: Prefix,
        name: String,
        industry_code: String,
        /// The first credential, minted by the receiving server (its hash, never the secret).
        credential: Credential,
    },
    RotateToken {
        prefix: Prefix,
        keep_previous: bool,
        credential: Credential,
    },
    RevokeTokens {
        prefix: Prefix,
    },
    Grant {
        scope: String,
        grantee: Prefix,
    },
    RevokeGrant {
        scope: String,
        grantee: Prefix,
    },
    SetQuota {
        prefix: Prefix,
        quota: Quota,
    },
    RegisterTemplate {
        template: Template,
    },
    /// The site's first admin credential (a site bootstraps it once, through its log).
    AdminCredential {
        credential: Credential,
    },
}

impl Op {
    /// The operation's name, as logs and metrics say it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Register { .. } => "register",
            Op::Put { .. } => "put",
            Op::BatchRegister { .. } => "batch_register",
            Op::Update { .. } => "update",
            Op::Delete { .. } => "delete",
            Op::CreateEnterprise { .. } => "create_enterprise",
            Op::RotateToken { .. } => "rotate_token",
            Op::RevokeTokens { .. } => "revoke_tokens",
            Op::Grant { .. } => "grant",
            Op::RevokeGrant { .. } => "revoke_grant",
            Op::SetQuota { .. } => "set_quota",
            Op::RegisterTemplate { .. } => "register_template",
            Op::AdminCredential { .. } => "admin_credential",
        }
    }
}

thread_local! {
    /// The request being served on this thread ([`as_request`]): the client's id for it and
    /// the id of the credential it authenticated with.
    static REQUEST: std::cell::RefCell<(Option<String>, Option<String>)> =
        const { std::cell::RefCell::new((None, None)) };
}

/// Runs `f` on behalf of a client request: `id` (its `x-idnode-request-id`) and the id of
/// the credential that authenticated it. The writes `f` makes carry both: the same request
/// retried, on this server or another of its site, is applied once and answered with the
/// first outcome; and a write is refused when applied if its credential was revoked (or
/// expired) by then, on every server alike.
pub fn as_request<R>(id: Option<&str>, credential: Option<&str>, f: impl FnOnce() -> R) -> R {
    let now = (id.map(str::to_owned), credential.map(str::to_owned));
    let previous = REQUEST.with(|r| r.replace(now));
    let out = f();
    REQUEST.with(|r| *r.borrow_mut() = previous);
    out
}

/// Metadata (gRPC) and header (HTTP) naming a client's request, so that its retry (on this
/// server or, in a site, on another) is applied once: up to 128 visible ASCII characters.
pub const REQUEST_ID_HEADER: &str = "x-idnode-request-id";

/// Whether `id` may name a client's request: 1-128 visible ASCII characters.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// An authenticated request as the HTTP adapters carry it: the caller, the client's
/// request id, and the id of the credential it authenticated with. Writes made in
/// [`Requester::acting`] carry both (see [`as_request`]); it derefs to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Requester {
    pub caller: Caller,
    pub request: Option<String>,
    pub credential: Option<String>,
}

impl Requester {
    /// `caller`, authenticated with what the client `presented`, for the request named
    /// `request`.
    pub fn new(caller: Caller, presented: &super::Presented, request: Option<String>) -> Requester {
        Requester {
            caller,
            request,
            credential: presented.credential().map(str::to_owned),
        }
    }

    /// Runs `f` on behalf of this request ([`as_request`]).
    pub fn acting<R>(&self, f: impl FnOnce() -> R) -> R {
        as_request(self.request.as_deref(), self.credential.as_deref(), f)
    }
}

impl std::ops::Deref for Requester {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// A write, complete: applying it needs nothing but the store it is applied to.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The client's request id, if it gave one (not applied: it names the write in the
    /// site's log, where a repeat is recognised).
    pub request: Option<String>,
    pub caller: Caller,
    /// The id of the credential the caller authenticated with, if the adapter said: it must
    /// still hold when the command is applied.
    pub credential: Option<String>,
    /// The one clock reading of the write (seconds since the epoch): value timestamps, the
    /// log entry's time, creation times, token expiry, and the day of per-day quotas.
    pub at: i64,
    pub op: Op,
}

/// What applying a command did, for the client that asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Register(RegisterOutcome),
    /// `Put`: true when it registered.
    Put(bool),
    Batch(Vec<Result<RegisterOutcome>>),
    Record(Record),
    Enterprise(Enterprise),
    Done,
}

/// The site's log, as the core sees it: append a command and wait until this server has
/// applied it (read-your-writes), returning what applying it did. Blocking, like every
/// core call; implemented by `crate::site`.
pub trait SharedLog: Send + Sync {
    fn submit(&self, command: Command) -> Result<Applied>;
    /// (the last sequence applied here, messages of the log not applied yet).
    fn position(&self) -> (u64, u64);
    /// Waits until this server has applied everything the log held when called (bounded
    /// by the site's write deadline; `Unavailable` past it).
    fn catch_up(&self) -> Result<()>;
}

/// How a command is being applied: its time, and where it sits in the site's log.
pub(super) struct Stamp {
    pub at: i64,
    /// The site log sequence, written in the same store batch as the change.
    position: Option<u64>,
    /// Set once a batch carrying `position` was committed.
    positioned: Cell<bool>,
    /// Check only: stop before the first write (`Error` with `DRY_RUN`).
    dry: bool,
}

/// The message of the error a dry run stops with.
const DRY_RUN: &str = "dry run: the checks passed";

impl Stamp {
    pub fn at(at: i64) -> Stamp {
        Stamp {
            at,
            position: None,
            positioned: Cell::new(false),
            dry: false,
        }
    }

    /// Days since the epoch (UTC) of the write.
    pub fn day(&self) -> i64 {
        self.at.div_euclid(86_400)
    }

    /// Adds the position to `batch`, or stops a dry run.
    pub fn seal(&self, batch: &mut Batch) -> Result<()> {
        if self.dry {
            return Err(Error::new(ErrorKind::Internal, DRY_RUN));
        }
        if let Some(seq) = self.position {
            batch.put(Table::Meta, SITE_APPLIED, seq.to_be_bytes().to_vec());
            self.positioned.set(true);
        }
        Ok(())
    }
}

impl Core {
    /// Sets the site's log (once, before serving): from then on every write is appended
    /// to it and applied in log order.
    pub fn set_shared_log(&self, log: Arc<dyn SharedLog>) {
        let _ = self.shared_log.set(log);
    }

    /// True when writes go through a site's log.
    pub fn in_site(&self) -> bool {
        self.shared_log.get().is_some()
    }

    /// In a site: (the last log sequence applied here, messages not applied yet).
    pub fn site_position(&self) -> Option<(u64, u64)> {
        self.shared_log.get().map(|l| l.position())
    }

    /// Makes `op` a command for `caller` now, and applies it: directly, or through the
    /// site's log.
    pub(super) fn write(&self, caller: &Caller, op: Op) -> Result<Applied> {
        let (request, credential) = REQUEST.with(|r| r.borrow().clone());
        let command = Command {
            request,
            credential,
            caller: caller.clone(),
            at: auth::now(),
            op,
        };
        match self.shared_log.get() {
            None => self.apply(command, None),
            Some(log) => log.submit(command),
        }
    }

    /// Applies `command`: the same checks and the same store change on every server that
    /// applies it, since they depend only on the command and the store. With `position`
    /// (the command's place in the site's log) the store records it in the same atomic
    /// batch as the change, or alone when the command changes nothing (refused, or already
    /// present), so a restarted server resumes after it, never applying a command twice.
    pub fn apply(&self, command: Command, position: Option<u64>) -> Result<Applied> {
        let stamp = Stamp {
            position,
            ..Stamp::at(command.at)
        };
        let result = self
            .credential_holds(&command)
            .and_then(|()| self.apply_stamped(&command.caller, command.op, &stamp));
        if position.is_some() && !stamp.positioned.get() {
            let mut batch = Batch::new();
            stamp.seal(&mut batch)?;
            self.commit(batch)?;
        }
        result
    }

    /// Records that the site log's message `position` was applied without changing
    /// anything else (it held no command this server can read).
    pub fn apply_nothing(&self, position: u64) -> Result<()> {
        let stamp = Stamp {
            position: Some(position),
            ..Stamp::at(0)
        };
        let mut batch = Batch::new();
        stamp.seal(&mut batch)?;
        self.commit(batch)
    }

    /// Checks `command` against this store without writing: `Ok` when applying it now would
    /// succeed. Only for the writes whose every effect is in the store (records).
    pub fn check(&self, command: &Command) -> Result<()> {
        let stamp = Stamp {
            dry: true,
            ..Stamp::at(command.at)
        };
        let op = match &command.op {
            Op::Register { .. } | Op::Put { .. } | Op::Update { .. } | Op::Delete { .. } => {
                command.op.clone()
            }
            _ => return Ok(()),
        };
        self.credential_holds(command)?;
        match self.apply_stamped(&command.caller, op, &stamp) {
            Err(e) if e.kind == ErrorKind::Internal && e.message == DRY_RUN => Ok(()),
            Err(e) => Err(e),
            // Nothing to write (e.g. an identical record is present): it would succeed.
            Ok(_) => Ok(()),
        }
    }

    /// Whether the credential `command` was sent with (if named) still speaks for its
    /// caller at the command's time: stored (not revoked), unexpired, of the same subject.
    fn credential_holds(&self, command: &Command) -> Result<()> {
        let Some(id) = &command.credential else {
            return Ok(());
        };
        let stored = self
            .store
            .get(Table::Credentials, id.as_bytes())
            .map_err(Error::internal)?;
        let holds = match stored {
            Some(bytes) => {
                let c: Credential = codec::decode_json(&bytes).map_err(Error::internal)?;
                let unexpired = c.expires_at.is_none_or(|t| command.at < t);
                let same = match (&c.subject, &command.caller) {
                    (Subject::Admin, Caller::Admin) => true,
                    (Subject::Enterprise { prefix }, Caller::Enterprise(p)) => prefix == p.as_str(),
                    (Subject::Node { prefix }, Caller::Node(p)) => prefix == p.as_str(),
                    _ => false,
                };
                unexpired && same
            }
            None => false,
        };
        match holds {
            true => Ok(()),
            false => Err(Error::unauthenticated(
                "the token was revoked or expired before this write was applied",
            )),
        }
    }

    /// The last site log sequence applied to this store (0: none).
    pub fn site_applied(&self) -> Result<u64> {
        let v = self
            .store
            .get(Table::Meta, SITE_APPLIED)
            .map_err(Error::internal)?;
        Ok(match v {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
            _ => 0,
        })
    }

    fn apply_stamped(&self, caller: &Caller, op: Op, stamp: &Stamp) -> Result<Applied> {
        Ok(match op {
            Op::Register { id, record } => {
                Applied::Register(self.apply_register(caller, id, record, stamp)?)
            }
            Op::Put { id, record } => Applied::Put(self.apply_put(caller, id, record, stamp)?),
            Op::BatchRegister { items } => {
                let items = items.into_iter().map(|(id, r)| (Ok(id), r)).collect();
                let prepared = self.prepare_batch_at(caller, items, stamp.at);
                Applied::Batch(self.write_batch_stamped(caller, prepared, stamp))
            }
            Op::Update { id, update } => {
                Applied::Record(self.apply_update(caller, &id, update, stamp)?)
            }
            Op::Delete { id } => {
                self.apply_delete(caller, &id, stamp)?;
                Applied::Done
            }
            Op::CreateEnterprise {
                prefix,
                name,
                industry_code,
                credential,
            } => Applied::Enterprise(self.apply_create_enterprise(
                caller,
                &prefix,
                &name,
                &industry_code,
                credential,
                stamp,
            )?),
            Op::RotateToken {
                prefix,
                keep_previous,
                credential,
            } => {
                self.apply_rotate_token(caller, &prefix, keep_previous, credential, stamp)?;
                Applied::Done
            }
            Op::RevokeTokens { prefix } => {
                self.require_admin(caller)?;
                self.change_credentials(caller, &prefix, None, false, stamp)?;
                Applied::Done
            }
            Op::Grant { scope, grantee } => {
                let scope = Scope::parse(self, &scope)?;
                self.apply_grant(caller, &scope, &grantee, stamp)?;
                Applied::Done
            }
            Op::RevokeGrant { scope, grantee } => {
                let scope = Scope::parse(self, &scope)?;
                self.apply_revoke_grant(caller, &scope, &grantee, stamp)?;
                Applied::Done
            }
            Op::SetQuota { prefix, quota } => {
                self.apply_set_quota(caller, &prefix, quota, stamp)?;
                Applied::Done
            }
            Op::RegisterTemplate { template } => {
                Applied::Register(self.apply_register_template(caller, template, stamp)?)
            }
            Op::AdminCredential { credential } => {
                self.apply_admin_credential(credential, stamp)?;
                Applied::Done
            }
        })
    }
}

/// A new enterprise credential made now, with its secret (the token, shown once).
pub(super) fn mint_enterprise(prefix: &Prefix, at: i64, ttl: Option<u64>) -> auth::NewToken {
    let mut minted = auth::mint(
        Subject::Enterprise {
            prefix: prefix.to_string(),
        },
        at,
    );
    minted.credential.expires_at = ttl.map(|t| at.saturating_add(t as i64));
    minted
}

// The wire form of a command: JSON, with records as their store encoding (base64), so the
// one canonical record encoding is also the log's.

#[derive(Serialize, Deserialize)]
struct Wire {
    /// Format version.
    v: u8,
    caller: WireCaller,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
    at: i64,
    op: WireOp,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", content = "prefix", rename_all = "lowercase")]
enum WireCaller {
    Anonymous,
    Admin,
    Enterprise(String),
    Node(String),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum WireOp {
    Register {
        id: String,
        record: String,
    },
    Put {
        id: String,
        record: String,
    },
    BatchRegister {
        items: Vec<(String, String)>,
    },
    Replace {
        id: String,
        values: String,
    },
    Edit {
        id: String,
        add: String,
        modify: String,
        remove: Vec<u32>,
        put: String,
    },
    Delete {
        id: String,
    },
    CreateEnterprise {
        prefix: String,
        name: String,
        industry_code: String,
        credential: Credential,
    },
    RotateToken {
        prefix: String,
        keep_previous: bool,
        credential: Credential,
    },
    RevokeTokens {
        prefix: String,
    },
    Grant {
        scope: String,
        grantee: String,
    },
    RevokeGrant {
        scope: String,
        grantee: String,
    },
    SetQuota {
        prefix: String,
        quota: Quota,
    },
    RegisterTemplate {
        template: Template,
    },
    AdminCredential {
        credential: Credential,
    },
}

const WIRE_VERSION: u8 = 1;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn record_text(record: &Record) -> String {
    b64(&codec::encode_record(record))
}

fn values_text(values: &[Value]) -> String {
    record_text(&Record {
        values: values.to_vec(),
    })
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("undecodable site command: {what}"))
}

fn record_of(text: &str) -> Result<Record> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(bad)?;
    codec::decode_record(&bytes).map_err(bad)
}

fn id_of(text: &str) -> Result<Identifier> {
    Identifier::parse(text).map_err(bad)
}

fn prefix_of(text: &str) -> Result<Prefix> {
    Prefix::parse(text).map_err(bad)
}

impl Command {
    /// The command's wire form.
    pub fn encode(&self) -> Vec<u8> {
        let caller = match &self.caller {
            Caller::Anonymous => WireCaller::Anonymous,
            Caller::Admin => WireCaller::Admin,
            Caller::Enterprise(p) => WireCaller::Enterprise(p.to_string()),
            Caller::Node(p) => WireCaller::Node(p.to_string()),
        };
        let op = match &self.op {
            Op::Register { id, record } => WireOp::Register {
                id: id.to_string(),
                record: record_text(record),
            },
            Op::Put { id, record } => WireOp::Put {
                id: id.to_string(),
                record: record_text(record),
            },
            Op::BatchRegister { items } => WireOp::BatchRegister {
                items: items
                    .iter()
                    .map(|(id, r)| (id.to_string(), record_text(r)))
                    .collect(),
            },
            Op::Update {
                id,
                update: Update::Replace(values),
            } => WireOp::Replace {
                id: id.to_string(),
                values: values_text(values),
            },
            Op::Update {
                id,
                update:
                    Update::Edit {
                        add,
                        modify,
                        remove,
                        put,
                    },
            } => WireOp::Edit {
                id: id.to_string(),
                add: values_text(add),
                modify: values_text(modify),
                remove: remove.clone(),
                put: values_text(put),
            },
            Op::Delete { id } => WireOp::Delete { id: id.to_string() },
            Op::CreateEnterprise {
                prefix,
                name,
                industry_code,
                credential,
            } => WireOp::CreateEnterprise {
                prefix: prefix.to_string(),
                name: name.clone(),
                industry_code: industry_code.clone(),
                credential: credential.clone(),
            },
            Op::RotateToken {
                prefix,
                keep_previous,
                credential,
            } => WireOp::RotateToken {
                prefix: prefix.to_string(),
                keep_previous: *keep_previous,
                credential: credential.clone(),
            },
            Op::RevokeTokens { prefix } => WireOp::RevokeTokens {
                prefix: prefix.to_string(),
            },
            Op::Grant { scope, grantee } => WireOp::Grant {
                scope: scope.clone(),
                grantee: grantee.to_string(),
            },
            Op::RevokeGrant { scope, grantee } => WireOp::RevokeGrant {
                scope: scope.clone(),
                grantee: grantee.to_string(),
            },
            Op::SetQuota { prefix, quota } => WireOp::SetQuota {
                prefix: prefix.to_string(),
                quota: quota.clone(),
            },
            Op::RegisterTemplate { template } => WireOp::RegisterTemplate {
                template: template.clone(),
            },
            Op::AdminCredential { credential } => WireOp::AdminCredential {
                credential: credential.clone(),
            },
        };
        serde_json::to_vec(&Wire {
            v: WIRE_VERSION,
            caller,
            credential: self.credential.clone(),
            at: self.at,
            op,
        })
        .expect("a command serialises")
    }

    /// A command from its wire form. Errors: `Internal` for bytes no server wrote.
    pub fn decode(bytes: &[u8]) -> Result<Command> {
        let w: Wire = serde_json::from_slice(bytes).map_err(bad)?;
        if w.v != WIRE_VERSION {
            return Err(bad(format!("format version {}", w.v)));
        }
        let caller = match w.caller {
            WireCaller::Anonymous => Caller::Anonymous,
            WireCaller::Admin => Caller::Admin,
            WireCaller::Enterprise(p) => Caller::Enterprise(prefix_of(&p)?),
            WireCaller::Node(p) => Caller::Node(prefix_of(&p)?),
        };
        let values = |t: &str| record_of(t).map(|r| r.values);
        let op = match w.op {
            WireOp::Register { id, record } => Op::Register {
                id: id_of(&id)?,
                record: record_of(&record)?,
            },
            WireOp::Put { id, record } => Op::Put {
                id: id_of(&id)?,
                record: record_of(&record)?,
            },
            WireOp::BatchRegister { items } => Op::BatchRegister {
                items: items
                    .iter()
                    .map(|(id, r)| Ok((id_of(id)?, record_of(r)?)))
                    .collect::<Result<_>>()?,
            },
            WireOp::Replace { id, values: v } => Op::Update {
                id: id_of(&id)?,
                update: Update::Replace(values(&v)?),
            },
            WireOp::Edit {
                id,
                add,
                modify,
                remove,
                put,
            } => Op::Update {
                id: id_of(&id)?,
                update: Update::Edit {
                    add: values(&add)?,
                    modify: values(&modify)?,
                    remove,
                    put: values(&put)?,
                },
            },
            WireOp::Delete { id } => Op::Delete { id: id_of(&id)? },
            WireOp::CreateEnterprise {
                prefix,
                name,
                industry_code,
                credential,
            } => Op::CreateEnterprise {
                prefix: prefix_of(&prefix)?,
                name,
                industry_code,
                credential,
            },
            WireOp::RotateToken {
                prefix,
                keep_previous,
                credential,
            } => Op::RotateToken {
                prefix: prefix_of(&prefix)?,
                keep_previous,
                credential,
            },
            WireOp::RevokeTokens { prefix } => Op::RevokeTokens {
                prefix: prefix_of(&prefix)?,
            },
            WireOp::Grant { scope, grantee } => Op::Grant {
                scope,
                grantee: prefix_of(&grantee)?,
            },
            WireOp::RevokeGrant { scope, grantee } => Op::RevokeGrant {
                scope,
                grantee: prefix_of(&grantee)?,
            },
            WireOp::SetQuota { prefix, quota } => Op::SetQuota {
                prefix: prefix_of(&prefix)?,
                quota,
            },
            WireOp::RegisterTemplate { template } => Op::RegisterTemplate { template },
            WireOp::AdminCredential { credential } => Op::AdminCredential { credential },
        };
        Ok(Command {
            request: None,
            caller,
            credential: w.credential,
            at: w.at,
            op,
        })
    }

    /// The one identifier this command writes, if it writes exactly one (register, put,
    /// update, delete).
    pub fn identifier(&self) -> Option<&Identifier> {
        match &self.op {
            Op::Register { id, .. }
            | Op::Put { id, .. }
            | Op::Update { id, .. }
            | Op::Delete { id } => Some(id),
            _ => None,
        }
    }

    /// The prefix whose owner this command changes: the unit of conflict in a site's log
    /// (`None`: it spans several, or the whole node).
    pub fn owner(&self, core: &Core) -> Option<String> {
        let of_id = |id: &Identifier| core.owner_prefix(&id.prefix());
        match (&self.op, self.identifier()) {
            (_, Some(id)) => Some(of_id(id)),
            (Op::BatchRegister { items }, _) => {
                let mut owners = items.iter().map(|(id, _)| of_id(id));
                let first = owners.next()?;
                owners.all(|o| o == first).then_some(first)
            }
            (
                Op::CreateEnterprise { prefix, .. }
                | Op::RotateToken { prefix, .. }
                | Op::RevokeTokens { prefix }
                | Op::SetQuota { prefix, .. },
                _,
            ) => Some(prefix.to_string()),
            (Op::Grant { scope, .. } | Op::RevokeGrant { scope, .. }, _) => {
                let prefix = match scope.split_once('/') {
                    Some((p, _)) => p,
                    None => scope.as_str(),
                };
                Prefix::parse(prefix).ok().map(|p| core.owner_prefix(&p))
            }
            (Op::RegisterTemplate { template }, _) => Identifier::parse(&template.identifier)
                .ok()
                .map(|id| of_id(&id)),
            // The admin credential (single-identifier commands matched first).
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(op: Op) -> Command {
        Command {
            request: None,
            credential: None,
            caller: Caller::Enterprise(Prefix::parse("88.101.5").unwrap()),
            at: 1_700_000_000,
            op,
        }
    }

    #[test]
    fn every_op_survives_its_wire_form() {
        let id = Identifier::parse("88.101.5/A-1").unwrap();
        let rec = Record::new(vec![Value::text(1, "URL", "https://example.cn/a")]);
        let cred = auth::mint(Subject::Admin, 5).credential;
        let ops = vec![
            Op::Register {
                id: id.clone(),
                record: rec.clone(),
            },
            Op::Put {
                id: id.clone(),
                record: rec.clone(),
            },
            Op::BatchRegister {
                items: vec![(id.clone(), rec.clone())],
            },
            Op::Update {
                id: id.clone(),
                update: Update::Replace(rec.values.clone()),
            },
            Op::Update {
                id: id.clone(),
                update: Update::Edit {
                    add: rec.values.clone(),
                    modify: vec![],
                    remove: vec![3],
                    put: rec.values.clone(),
                },
            },
            Op::Delete { id: id.clone() },
            Op::CreateEnterprise {
                prefix: Prefix::parse("88.101.5").unwrap(),
                name: "某公司".into(),
                industry_code: "C39".into(),
                credential: cred.clone(),
            },
            Op::RevokeTokens {
                prefix: Prefix::parse("88.101.5").unwrap(),
            },
            Op::Grant {
                scope: "88.101.5/A-1".into(),
                grantee: Prefix::parse("88.101.6").unwrap(),
            },
            Op::SetQuota {
                prefix: Prefix::parse("88.101.5").unwrap(),
                quota: Quota {
                    max_registrations: Some(3),
                    ..Default::default()
                },
            },
            Op::AdminCredential { credential: cred },
        ];
        for op in ops {
            let c = command(op);
            assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        }
        assert!(Command::decode(b"{\"v\":9}").is_err());
    }

    #[test]
    fn registrations_by_domain_and_risk_follow_every_write() {
        use crate::record::{DataDomain, Risk};
        let core = Core::in_memory("88.101");
        let admin = Caller::Admin;
        let classified = |index, d, r: Risk| {
            let mut v = Value::text(index, "QC", "x");
            v.permissions.classify(r.loosest());
            v.domain = Some(d);
            v.risk = Some(r);
            v
        };
        let cell = |d, r| {
            core.classes(&admin)
                .unwrap()
                .into_iter()
                .find(|(cd, cr, _)| *cd == d && *cr == r)
                .unwrap()
                .2
        };
        let id = Identifier::parse("88.101/C-1").unwrap();
        // Two values in one cell count the identifier once; another cell once more.
        let rec = Record::new(vec![
            classified(1, DataDomain::Production, Risk::High),
            classified(2, DataDomain::Production, Risk::High),
            classified(3, DataDomain::Rd, Risk::Low),
        ]);
        core.register(&admin, id.clone(), rec).unwrap();
        assert_eq!(cell(DataDomain::Production, Risk::High), 1);
        assert_eq!(cell(DataDomain::Rd, Risk::Low), 1);
        // An update moves it between cells; a delete takes it out.
        let moved = vec![classified(1, DataDomain::External, Risk::Medium)];
        core.update(&admin, &id, Update::Replace(moved)).unwrap();
        assert_eq!(cell(DataDomain::Production, Risk::High), 0);
        assert_eq!(cell(DataDomain::Rd, Risk::Low), 0);
        assert_eq!(cell(DataDomain::External, Risk::Medium), 1);
        core.delete(&admin, &id).unwrap();
        assert_eq!(cell(DataDomain::External, Risk::Medium), 0);
        // A batch counts its new records, not its repeats; enterprises may not read them.
        let batch = |n: u32| {
            (0..n)
                .map(|i| {
                    let id = Identifier::parse(&format!("88.101/B-{i}")).unwrap();
                    let v = vec![classified(1, DataDomain::Operations, Risk::Low)];
                    (Ok(id), Record::new(v))
                })
                .collect()
        };
        core.batch_register(&admin, batch(3));
        core.batch_register(&admin, batch(4));
        assert_eq!(cell(DataDomain::Operations, Risk::Low), 4);
        let e = core
            .classes(&Caller::Enterprise(Prefix::parse("88.101.5").unwrap()))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_write_whose_token_was_revoked_before_it_applied_is_refused_everywhere() {
        let core = Core::in_memory("88.101");
        let admin = Caller::Admin;
        let prefix = Prefix::parse("88.101.5").unwrap();
        let (_, token) = core
            .create_enterprise(&admin, &prefix, "Co", "C39", None)
            .unwrap();
        let (id, _) = auth::split_token(&token).unwrap();
        let caller = Caller::Enterprise(prefix.clone());
        let command = |n: u32| Command {
            request: None,
            credential: Some(id.to_owned()),
            caller: caller.clone(),
            at: auth::now(),
            op: Op::Register {
                id: Identifier::parse(&format!("88.101.5/T-{n}")).unwrap(),
                record: Record::new(vec![Value::text(1, "URL", "u")]),
            },
        };
        // Sent with a valid token: applied.
        core.apply(command(1), None).unwrap();
        // The token is revoked (on another server, say) before the next command applies.
        core.revoke_tokens(&admin, &prefix).unwrap();
        let e = core.apply(command(2), Some(9)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
        assert!(core.check(&command(3)).is_err());
        // Nothing was written but the position; a credential of another subject fails too.
        assert!(core
            .get(&admin, &Identifier::parse("88.101.5/T-2").unwrap())
            .is_err());
        assert_eq!(core.site_applied().unwrap(), 9);
        let wrong = Command {
            caller: Caller::Admin,
            ..command(4)
        };
        assert!(core.apply(wrong, None).is_err());
        // The id travels in the command's wire form.
        let c = command(5);
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn single_process_writes_are_applied_commands() {
        let core = Core::in_memory("88.101");
        let admin = Caller::Admin;
        let id = Identifier::parse("88.101/X").unwrap();
        let rec = Record::new(vec![Value::text(1, "URL", "u")]);
        let cmd = Command {
            request: None,
            credential: None,
            caller: admin.clone(),
            at: 1_000_000,
            op: Op::Register {
                id: id.clone(),
                record: rec.clone(),
            },
        };
        // The check writes nothing, then the same command applies; its time is the values'.
        core.check(&cmd).unwrap();
        assert!(core.get(&admin, &id).is_err());
        assert_eq!(
            core.apply(cmd.clone(), Some(7)).unwrap(),
            Applied::Register(RegisterOutcome::Registered)
        );
        assert_eq!(
            core.get(&admin, &id).unwrap().values[0].timestamp,
            1_000_000
        );
        assert_eq!(core.site_applied().unwrap(), 7);
        // Applied again (a duplicate in the log): nothing changes but the position.
        assert_eq!(
            core.apply(cmd, Some(8)).unwrap(),
            Applied::Register(RegisterOutcome::AlreadyPresent)
        );
        assert_eq!(core.site_applied().unwrap(), 8);
        assert_eq!(core.log_head().0, 1);
    }
}
