//! Accounts: authentication, the admin token, enterprises and their tokens.

use std::path::Path;

use super::command::{mint_enterprise, Applied, Op, Stamp};
use super::{Core, Presented};
use crate::auth::{Caller, Credential, Enterprise};
use crate::credentials::{authenticate, ensure_admin_token, AdminBootstrap};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::Prefix;
use crate::store::{codec, Batch, Table};

/// At most this many tokens are valid at once for one enterprise (rotation overlap).
const MAX_TOKENS_PER_ENTERPRISE: usize = 2;

impl Core {
    /// Turns a bearer token (if any) into a caller; see [`authenticate`]. In a site, a
    /// token this server does not accept may have been minted (or its enterprise created)
    /// through another server a moment ago: the server catches up to the log's end once
    /// and looks again, so a client may use a new token on any server at once. (Repeated
    /// bad tokens are limited by the failed-authentication lockout in front of this.)
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller> {
        match (
            authenticate(self.store.as_ref(), token),
            self.shared_log.get(),
        ) {
            (Err(e), Some(log)) if e.kind == ErrorKind::Unauthenticated => {
                log.catch_up()?;
                authenticate(self.store.as_ref(), token)
            }
            (r, _) => r,
        }
    }

    /// Authenticates what a client presented: refuses clients with too many recent
    /// failures (reason 406), counts failures, and applies the enterprise's request-rate
    /// quota (reason 603).
    pub fn caller(&self, presented: &Presented) -> Result<Caller> {
        let Some(token) = presented.token.as_deref() else {
            return Ok(Caller::Anonymous);
        };
        let caller = self
            .failures
            .authenticate(presented.client, || self.authenticate(Some(token)))?;
        self.admit_request(&caller)?;
        Ok(caller)
    }

    /// Makes sure an admin credential exists; see [`ensure_admin_token`]. A new or reset
    /// admin token is a log entry like every other credential change.
    pub fn ensure_admin_token(&self, token_file: &Path, reset: bool) -> Result<AdminBootstrap> {
        let stamp = Stamp::at(crate::auth::now());
        ensure_admin_token(
            self.store.as_ref(),
            token_file,
            reset,
            |batch, credential, replaced| {
                let detail = match replaced {
                    true => "admin token reset",
                    false => "admin token created",
                };
                let entry = self.credentials_entry(
                    "tokens",
                    &Caller::Admin,
                    "admin".to_owned(),
                    format!("{detail}; valid: {}", credential.id),
                    &[(credential.id.clone(), codec::encode_json(credential))],
                );
                self.commit_logged(batch, vec![entry], &stamp)
            },
        )
    }

    /// True when the store has an admin credential.
    pub fn has_admin_credential(&self) -> Result<bool> {
        crate::credentials::admin_credential(self.store.as_ref()).map(|c| c.is_some())
    }

    /// Stores a site's first admin credential, minted by the server that bootstrapped the
    /// site (which alone holds the token). A site has one: a second is refused.
    pub(super) fn apply_admin_credential(
        &self,
        credential: Credential,
        stamp: &Stamp,
    ) -> Result<()> {
        if self.has_admin_credential()? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "the site already has an admin credential",
            ));
        }
        let batch = crate::credentials::admin_credential_batch(&credential, None);
        let entry = self.credentials_entry(
            "tokens",
            &Caller::Admin,
            "admin".to_owned(),
            format!("admin token created; valid: {}", credential.id),
            &[(credential.id.clone(), codec::encode_json(&credential))],
        );
        self.commit_logged(batch, vec![entry], stamp)
    }

    /// The log entry (`op`: `tokens` or `enterprise`) of a change of `target`'s credentials:
    /// `stored` is every credential valid afterwards, as stored.
    fn credentials_entry(
        &self,
        op: &'static str,
        caller: &Caller,
        target: String,
        detail: String,
        stored: &[(String, Vec<u8>)],
    ) -> crate::oplog::Draft {
        let mut draft = self.entry(op, caller, target, Some(detail), None);
        draft.content = Some(crate::oplog::credentials_digest(stored));
        draft
    }

    pub fn require_admin(&self, caller: &Caller) -> Result<()> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Anonymous => Err(Error::unauthenticated(
                "this operation needs the admin token",
            )),
            Caller::Enterprise(_) | Caller::Node(_) => {
                Err(Error::denied("only the node admin may do this"))
            }
        }
    }

    /// Allocates an enterprise prefix under the node prefix and returns the account with
    /// its first token (shown once).
    ///
    /// Errors: `InvalidArgument` if the prefix is not strictly under the node prefix or the
    /// name is empty/too long; `AlreadyExists` if it overlaps an existing enterprise prefix.
    pub fn create_enterprise(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        name: &str,
        industry_code: &str,
        token_ttl: Option<u64>,
    ) -> Result<(Enterprise, String)> {
        // The token is made here; only its hash travels in the command.
        let minted = mint_enterprise(prefix, crate::auth::now(), token_ttl);
        let op = Op::CreateEnterprise {
            prefix: prefix.clone(),
            name: name.to_owned(),
            industry_code: industry_code.to_owned(),
            credential: minted.credential,
        };
        match self.write(caller, op)? {
            Applied::Enterprise(e) => Ok((e, minted.token)),
            other => Err(super::register::unexpected(other)),
        }
    }

    pub(super) fn apply_create_enterprise(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        name: &str,
        industry_code: &str,
        credential: Credential,
        stamp: &Stamp,
    ) -> Result<Enterprise> {
        self.require_admin(caller)?;
        if prefix == &self.config.node_prefix || !self.serves(prefix) {
            return Err(Error::invalid(format!(
                "an enterprise prefix must lie under the node prefix {} (e.g. {}.5)",
                self.config.node_prefix, self.config.node_prefix
            )));
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "enterprise name must be 1-256 bytes without control characters",
            ));
        }
        if industry_code.len() > 32 || industry_code.chars().any(char::is_control) {
            return Err(Error::invalid("industry code must be at most 32 bytes"));
        }
        let _latch = self.latches.lock("enterprises");
        {
            let enterprises = self.enterprises.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = enterprises.get(prefix.as_str()) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("prefix {} is already allocated to {}", prefix, e.name),
                ));
            }
            let overlap = enterprises.values().find(|e| {
                Prefix::parse(&e.prefix)
                    .map(|p| p.is_within(prefix) || prefix.is_within(&p))
                    .unwrap_or(false)
            });
            if let Some(e) = overlap {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("prefix {prefix} overlaps {} of {}", e.prefix, e.name),
                ));
            }
        }
        check_credential(&credential, prefix)?;
        let enterprise = Enterprise {
            prefix: prefix.to_string(),
            name: name.to_owned(),
            industry_code: industry_code.to_owned(),
            created_at: stamp.at,
            credential_ids: vec![credential.id.clone()],
            quota: Default::default(),
        };
        let mut batch = Batch::new();
        batch.put(
            Table::Enterprises,
            prefix.as_str(),
            codec::encode_json(&enterprise),
        );
        let stored = codec::encode_json(&credential);
        batch.put(Table::Credentials, credential.id.as_bytes(), stored.clone());
        let entry = self.credentials_entry(
            "enterprise",
            caller,
            prefix.to_string(),
            enterprise.name.clone(),
            &[(credential.id.clone(), stored)],
        );
        self.commit_logged(batch, vec![entry], stamp)?;
        self.enterprises
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(enterprise.prefix.clone(), enterprise.clone());
        Ok(enterprise)
    }

    /// Every enterprise, in prefix order (admin only).
    pub fn list_enterprises(&self, caller: &Caller) -> Result<Vec<Enterprise>> {
        self.require_admin(caller)?;
        let mut all: Vec<Enterprise> = self
            .enterprises
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok(all)
    }

    /// The enterprise that owns exactly `prefix`, if any.
    pub fn enterprise(&self, prefix: &Prefix) -> Option<Enterprise> {
        self.enterprises
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix.as_str())
            .cloned()
    }

    /// Issues a new token for an enterprise (the admin, or the enterprise itself). With
    /// `keep_previous` the newest existing token stays valid, so clients can switch over
    /// without downtime; otherwise every previous token stops working at once.
    pub fn rotate_token(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        keep_previous: bool,
        token_ttl: Option<u64>,
    ) -> Result<String> {
        let minted = mint_enterprise(prefix, crate::auth::now(), token_ttl);
        let op = Op::RotateToken {
            prefix: prefix.clone(),
            keep_previous,
            credential: minted.credential,
        };
        self.write(caller, op)?;
        Ok(minted.token)
    }

    pub(super) fn apply_rotate_token(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        keep_previous: bool,
        credential: Credential,
        stamp: &Stamp,
    ) -> Result<()> {
        let self_service = matches!(caller, Caller::Enterprise(p) if p == prefix);
        if !self_service {
            self.require_admin(caller)?;
        }
        check_credential(&credential, prefix)?;
        self.change_credentials(caller, prefix, Some(credential), keep_previous, stamp)
    }

    /// Revokes every token of an enterprise (admin only). The enterprise keeps its prefix
    /// and records; it can write again once the admin rotates in a new token.
    pub fn revoke_tokens(&self, caller: &Caller, prefix: &Prefix) -> Result<()> {
        let op = Op::RevokeTokens {
            prefix: prefix.clone(),
        };
        self.write(caller, op).map(|_| ())
    }

    pub(super) fn change_credentials(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        minted: Option<Credential>,
        keep_previous: bool,
        stamp: &Stamp,
    ) -> Result<()> {
        let _latch = self.latches.lock("enterprises");
        let mut enterprise = self
            .enterprise(prefix)
            .ok_or_else(|| Error::not_found(format!("no enterprise owns prefix {prefix}")))?;
        let mut batch = Batch::new();
        let mut keep = Vec::new();
        if keep_previous {
            keep.extend(enterprise.credential_ids.last().cloned());
        }
        for old in &enterprise.credential_ids {
            if !keep.contains(old) {
                batch.delete(Table::Credentials, old.as_bytes());
            }
        }
        // The credentials valid afterwards, as stored: the kept ones and the new one.
        let mut stored = Vec::new();
        for id in &keep {
            if let Some(bytes) = self
                .store
                .get(Table::Credentials, id.as_bytes())
                .map_err(Error::internal)?
            {
                stored.push((id.clone(), bytes));
            }
        }
        let mut detail = String::new();
        if let Some(c) = &minted {
            let bytes = codec::encode_json(c);
            batch.put(Table::Credentials, c.id.as_bytes(), bytes.clone());
            keep.push(c.id.clone());
            stored.push((c.id.clone(), bytes));
            detail = match c.expires_at {
                Some(t) => format!("new: {} (expires at {t}); ", c.id),
                None => format!("new: {} (no expiry); ", c.id),
            };
        }
        while keep.len() > MAX_TOKENS_PER_ENTERPRISE {
            let dropped = keep.remove(0);
            batch.delete(Table::Credentials, dropped.as_bytes());
            stored.retain(|(id, _)| *id != dropped);
        }
        enterprise.credential_ids = keep;
        batch.put(
            Table::Enterprises,
            prefix.as_str(),
            codec::encode_json(&enterprise),
        );
        // Logged without any secret: which credential ids are valid now, and the digest
        // of their stored form (hashes and expiry), which the audit recomputes.
        detail.push_str(&format!("valid: {}", enterprise.credential_ids.join(",")));
        let entry = self.credentials_entry("tokens", caller, prefix.to_string(), detail, &stored);
        self.commit_logged(batch, vec![entry], stamp)?;
        self.enterprises
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(enterprise.prefix.clone(), enterprise);
        Ok(())
    }
}

/// A credential a command carries must speak for the enterprise it is stored for.
fn check_credential(credential: &Credential, prefix: &Prefix) -> Result<()> {
    match &credential.subject {
        crate::auth::Subject::Enterprise { prefix: p } if p == prefix.as_str() => Ok(()),
        _ => Err(Error::invalid(format!(
            "credential {} does not speak for {prefix}",
            credential.id
        ))),
    }
}
