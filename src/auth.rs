//! Accounts and credentials: who a caller is and what it owns.
//!
//! A token is `idn_<id>_<secret>`: the public `id` finds the credential with one point read;
//! only the SHA-256 of the secret is stored, and it is compared in constant time. Tokens are
//! shown once, when created or rotated. This module does not touch storage: the core stores
//! and loads the types defined here.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::identifier::{Identifier, Prefix};

/// What a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "lowercase")]
pub enum Subject {
    /// The node's operator: allocates enterprise prefixes, owns the node prefix.
    Admin,
    /// An enterprise, owner of one prefix and everything under it.
    Enterprise { prefix: String },
    /// A secondary node known to a top-level node, by its delegated node prefix.
    Node { prefix: String },
}

/// A stored credential: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub subject: Subject,
    pub created_at: i64,
    /// Seconds since the epoch after which the token is refused; `None`: no expiry.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Limits the node admin sets on an enterprise; `None`: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Identifiers registered under the prefix at any time.
    #[serde(default)]
    pub max_registrations: Option<u64>,
    /// Registrations per calendar day (UTC).
    #[serde(default)]
    pub max_registrations_per_day: Option<u64>,
    /// Requests per second made with the enterprise's tokens (token bucket, burst = 1 s).
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
}

/// An enterprise account: a name and the prefix it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enterprise {
    pub prefix: String,
    pub name: String,
    #[serde(default)]
    pub industry_code: String,
    pub created_at: i64,
    /// Ids of the credentials currently valid for this enterprise.
    #[serde(default)]
    pub credential_ids: Vec<String>,
    #[serde(default)]
    pub quota: Quota,
}

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Admin,
    Enterprise(Prefix),
    /// A secondary node talking to a top-level node (owns no records).
    Node(Prefix),
}

impl Caller {
    /// True if the caller owns (may write, and read non-public values of) `prefix`.
    /// The admin owns the node prefix and everything under it.
    pub fn owns(&self, prefix: &Prefix, node_prefix: &Prefix) -> bool {
        self.owns_where(node_prefix, |p| prefix.is_within(p))
    }

    /// [`Caller::owns`] for the prefix of `id`, without building it.
    pub fn owns_identifier(&self, id: &Identifier, node_prefix: &Prefix) -> bool {
        self.owns_where(node_prefix, |p| id.is_within(p))
    }

    /// The ownership rule, once: `within(p)` says whether the thing asked about lies
    /// under `p`.
    fn owns_where(&self, node_prefix: &Prefix, within: impl Fn(&Prefix) -> bool) -> bool {
        match self {
            Caller::Anonymous | Caller::Node(_) => false,
            Caller::Admin => within(node_prefix),
            Caller::Enterprise(p) => within(p),
        }
    }
}

/// A freshly minted token and the credential that verifies it.
pub struct NewToken {
    /// The whole token, to hand to the client once.
    pub token: String,
    pub credential: Credential,
}

/// Mints a random token for `subject`.
pub fn mint(subject: Subject, now: i64) -> NewToken {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    NewToken {
        token: format!("idn_{id}_{secret}"),
        credential: Credential {
            secret_sha256: hash_secret(&secret),
            id,
            subject,
            created_at: now,
            expires_at: None,
        },
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits a token into (credential id, secret) if it has the token shape.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("idn_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id, 16) && ok(secret, 64)).then_some((id, secret))
}

/// True if `secret` matches the credential; constant time in the secret's content.
pub fn verify(credential: &Credential, secret: &str) -> bool {
    let computed = hash_secret(secret);
    computed
        .as_bytes()
        .ct_eq(credential.secret_sha256.as_bytes())
        .into()
}

/// Seconds since the Unix epoch, as credentials count time (creation, expiry).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let t = mint(Subject::Admin, 0);
        let (id, secret) = split_token(&t.token).unwrap();
        assert_eq!(id, t.credential.id);
        assert!(verify(&t.credential, secret));
        let other = mint(Subject::Admin, 0);
        let (_, other_secret) = split_token(&other.token).unwrap();
        assert!(!verify(&t.credential, other_secret));
        assert!(!t.credential.secret_sha256.contains(secret));
    }

    #[test]
    fn token_shape() {
        for bad in [
            "",
            "idn_",
            "idn_abc_def",
            "Bearer x",
            "idn_0123456789abcdef_zz",
        ] {
            assert_eq!(split_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn ownership() {
        let node = Prefix::parse("88.101").unwrap();
        let p = |s| Prefix::parse(s).unwrap();
        let ent = Caller::Enterprise(p("88.101.5"));
        assert!(ent.owns(&p("88.101.5"), &node));
        assert!(ent.owns(&p("88.101.5.7"), &node));
        assert!(!ent.owns(&p("88.101.50"), &node));
        assert!(!ent.owns(&p("88.101"), &node));
        assert!(Caller::Admin.owns(&p("88.101.5"), &node));
        assert!(!Caller::Admin.owns(&p("88.102"), &node));
        assert!(!Caller::Anonymous.owns(&p("88.101.5"), &node));
    }
}
