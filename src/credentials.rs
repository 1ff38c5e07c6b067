//! Credentials: turning a presented token into a caller, and the admin credential's
//! bootstrap. Shared by the secondary node's core and the top-level node (each over its own
//! store); the failed-authentication lockout in front of both is `crate::limits`.

use std::path::Path;

use crate::auth::{self, Caller, Credential, Subject};
use crate::error::{Error, Result};
use crate::identifier::Prefix;
use crate::store::{codec, Batch, Store, Table};

/// Meta key holding the admin credential's id.
const ADMIN_CREDENTIAL: &[u8] = b"admin_credential";

/// What `ensure_admin_token` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// A new admin token was minted and written to the file.
    Created,
    /// An admin credential already existed; the file was left alone.
    Existing,
}

/// Turns a bearer token (if any) into a caller, from the credentials of `store`.
///
/// Errors: `Unauthenticated` for a malformed, unknown or revoked token. No token is
/// `Caller::Anonymous`, not an error.
pub fn authenticate(store: &dyn Store, token: Option<&str>) -> Result<Caller> {
    let Some(token) = token else {
        return Ok(Caller::Anonymous);
    };
    let bad = || Error::unauthenticated("invalid token");
    let (id, secret) = auth::split_token(token.trim()).ok_or_else(bad)?;
    let cred: Credential = match store
        .get(Table::Credentials, id.as_bytes())
        .map_err(Error::internal)?
    {
        Some(bytes) => codec::decode_json(&bytes).map_err(Error::internal)?,
        None => return Err(bad()),
    };
    if !auth::verify(&cred, secret) {
        tracing::warn!(credential = id, "authentication failed: wrong secret");
        return Err(bad());
    }
    if cred.expires_at.is_some_and(|t| crate::auth::now() >= t) {
        tracing::warn!(credential = id, "authentication failed: token expired");
        return Err(Error::unauthenticated("token expired"));
    }
    let prefix = |p: &str| Prefix::parse(p).map_err(Error::internal);
    Ok(match cred.subject {
        Subject::Admin => Caller::Admin,
        Subject::Enterprise { prefix: p } => Caller::Enterprise(prefix(&p)?),
        Subject::Node { prefix: p } => Caller::Node(prefix(&p)?),
    })
}

/// Makes sure `store` has an admin credential. When none does (first start) or `reset` is
/// set, mints a token, writes it to `token_file` with mode 0600 (the only copy), and hands
/// the batch that stores its hash (and drops the old one) to `commit`, with the new
/// credential and whether it replaces one.
pub fn ensure_admin_token(
    store: &dyn Store,
    token_file: &Path,
    reset: bool,
    commit: impl FnOnce(Batch, &Credential, bool) -> Result<()>,
) -> Result<AdminBootstrap> {
    let existing = store
        .get(Table::Meta, ADMIN_CREDENTIAL)
        .map_err(Error::internal)?;
    if existing.is_some() && !reset {
        return Ok(AdminBootstrap::Existing);
    }
    let minted = auth::mint(Subject::Admin, crate::auth::now());
    crate::secrets::write_secret_file(token_file, &minted.token)
        .map_err(|e| Error::internal(format!("writing {}: {e}", token_file.display())))?;
    let replaced = existing.is_some();
    let batch = admin_credential_batch(&minted.credential, existing);
    commit(batch, &minted.credential, replaced)?;
    Ok(AdminBootstrap::Created)
}

/// The id of the admin credential `store` has, if any.
pub fn admin_credential(store: &dyn Store) -> Result<Option<Vec<u8>>> {
    store
        .get(Table::Meta, ADMIN_CREDENTIAL)
        .map_err(Error::internal)
}

/// The batch that makes `credential` the admin credential, dropping `replaced` (an id).
pub fn admin_credential_batch(credential: &Credential, replaced: Option<Vec<u8>>) -> Batch {
    let mut batch = Batch::new();
    if let Some(old) = replaced {
        batch.delete(Table::Credentials, old);
    }
    batch.put(
        Table::Credentials,
        credential.id.as_bytes(),
        codec::encode_json(credential),
    );
    batch.put(
        Table::Meta,
        ADMIN_CREDENTIAL,
        credential.id.clone().into_bytes(),
    );
    batch
}
