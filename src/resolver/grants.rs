//! Partner grants: an owner lets another enterprise read its `partner` values, for a whole
//! prefix it owns or for one identifier.

use serde::{Deserialize, Serialize};

use super::command::{Op, Stamp};
use super::Core;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::identifier::{Identifier, Prefix};
use crate::store::{codec, Batch, Table};

/// What a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every identifier under the prefix (and its sub-prefixes).
    Prefix(Prefix),
    Identifier(Identifier),
}

impl Scope {
    /// `88.101.5` is a prefix, `88.101.5/X` an identifier.
    pub fn parse(core: &Core, text: &str) -> Result<Scope> {
        if text.contains('/') {
            Ok(Scope::Identifier(core.parse_identifier(text)?))
        } else {
            Ok(Scope::Prefix(core.parse_prefix(text)?))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Scope::Prefix(p) => p.as_str(),
            Scope::Identifier(i) => i.as_str(),
        }
    }

    fn prefix(&self) -> Prefix {
        match self {
            Scope::Prefix(p) => p.clone(),
            Scope::Identifier(i) => i.prefix(),
        }
    }
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub scope: String,
    pub grantee: String,
    pub granted_at: i64,
}

fn key(scope: &str, grantee: &str) -> Vec<u8> {
    format!("{scope}\0{grantee}").into_bytes()
}

impl Core {
    fn grant_owner_check(&self, caller: &Caller, scope: &Scope, grantee: &Prefix) -> Result<()> {
        self.require_owner(caller, &scope.prefix())?;
        if self.enterprise(grantee).is_none() {
            return Err(Error::not_found(format!(
                "no enterprise owns prefix {grantee}"
            )));
        }
        Ok(())
    }

    /// Grants `grantee` read access to the partner values under `scope` (owner only).
    pub fn grant(&self, caller: &Caller, scope: &Scope, grantee: &Prefix) -> Result<()> {
        let op = Op::Grant {
            scope: scope.as_str().to_owned(),
            grantee: grantee.clone(),
        };
        self.write(caller, op).map(|_| ())
    }

    pub(super) fn apply_grant(
        &self,
        caller: &Caller,
        scope: &Scope,
        grantee: &Prefix,
        stamp: &Stamp,
    ) -> Result<()> {
        self.grant_owner_check(caller, scope, grantee)?;
        let g = Grant {
            scope: scope.as_str().to_owned(),
            grantee: grantee.to_string(),
            granted_at: stamp.at,
        };
        let mut batch = Batch::new();
        batch.put(
            Table::Grants,
            key(&g.scope, &g.grantee),
            codec::encode_json(&g),
        );
        self.commit_logged(
            batch,
            vec![self.entry(
                "grant",
                caller,
                g.scope.clone(),
                Some(g.grantee.clone()),
                None,
            )],
            stamp,
        )
    }

    /// Revokes a grant (owner only). Errors: `NotFound` if there is none.
    pub fn revoke_grant(&self, caller: &Caller, scope: &Scope, grantee: &Prefix) -> Result<()> {
        let op = Op::RevokeGrant {
            scope: scope.as_str().to_owned(),
            grantee: grantee.clone(),
        };
        self.write(caller, op).map(|_| ())
    }

    pub(super) fn apply_revoke_grant(
        &self,
        caller: &Caller,
        scope: &Scope,
        grantee: &Prefix,
        stamp: &Stamp,
    ) -> Result<()> {
        self.require_owner(caller, &scope.prefix())?;
        let k = key(scope.as_str(), grantee.as_str());
        if self
            .store
            .get(Table::Grants, &k)
            .map_err(Error::internal)?
            .is_none()
        {
            return Err(Error::not_found(format!(
                "{grantee} has no grant on {}",
                scope.as_str()
            )));
        }
        let mut batch = Batch::new();
        batch.delete(Table::Grants, k);
        self.commit_logged(
            batch,
            vec![self.entry(
                "revoke_grant",
                caller,
                scope.as_str().to_owned(),
                Some(grantee.to_string()),
                None,
            )],
            stamp,
        )
    }

    /// The grants on scopes under `prefix` (owner of the prefix only).
    pub fn grants(&self, caller: &Caller, prefix: &Prefix) -> Result<Vec<Grant>> {
        self.require_owner(caller, prefix)?;
        let rows = self
            .store
            .scan(Table::Grants, prefix.as_str().as_bytes(), None, 100_000)
            .map_err(Error::internal)?;
        let mut out = Vec::new();
        for (_, v) in rows {
            let g: Grant = codec::decode_json(&v).map_err(Error::internal)?;
            let under = Scope::parse(self, &g.scope)
                .map(|s| s.prefix().is_within(prefix))
                .unwrap_or(false);
            if under {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// True if `grantee` holds a grant covering `id`: on the identifier itself or on its
    /// prefix or any enclosing prefix.
    pub(super) fn granted(&self, grantee: &Prefix, id: &Identifier) -> Result<bool> {
        let prefix = id.prefix();
        let scopes = std::iter::once(id.as_str()).chain(prefix.ancestors_or_self());
        for scope in scopes {
            if self
                .store
                .get(Table::Grants, &key(scope, grantee.as_str()))
                .map_err(Error::internal)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
