//! Places: what lies on the way down to identifiers, for namings that walk the namespace
//! one step at a time (DNS names: a prefix's segments, then its suffixes).
//!
//! A hierarchical naming must tell "nothing lies here or below" (DNS NXDOMAIN, RFC 8020)
//! from "nothing here, but something below" (an empty non-terminal): resolvers that
//! minimise their queries (RFC 9156) stop at the first of these. The core answers the
//! question for a [`Place`]; the adapter maps names to places and never scans the store.

use std::sync::Arc;

use super::Core;
use crate::error::Result;
use crate::identifier::Prefix;
use crate::store::Table;

/// A place in the namespace that can have identifiers below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A prefix: the identifiers of it and of the prefixes under it, and the enterprise
    /// prefixes allocated at or under it.
    Prefix(Prefix),
    /// The identifiers of exactly `prefix` whose suffix starts with the bytes `start` and
    /// is longer (`start` empty: every identifier of the prefix). `start` need not be
    /// UTF-8: a naming may cut a suffix inside a character.
    Suffixes { prefix: Prefix, start: Vec<u8> },
}

impl Core {
    /// True when something lies below `place`:
    ///
    /// - [`Place::Prefix`] of the node prefix or an ancestor of it (`88` for `88.101`):
    ///   always;
    /// - under the node prefix: a registered identifier (one or two seeks in the ordered
    ///   store), or an enterprise prefix at or under a [`Place::Prefix`]; the suffixes of
    ///   an enterprise's or the node's own prefix (empty start) even before their first
    ///   identifier, since that is where its identifiers go;
    /// - elsewhere: whether the top-level node delegates the prefix (or an ancestor) to a
    ///   node. What lies inside another node cannot be seen from here, so every place under
    ///   a delegated prefix counts as occupied; without an upstream, nothing does.
    ///
    /// Reads the store on the store-read threads (a seek may wait for the disk).
    /// Errors: `Unavailable` when the upstream cannot be asked; `Internal` store failures.
    pub async fn occupied(self: &Arc<Self>, place: Place) -> Result<bool> {
        match place {
            // The node prefix or an ancestor of it.
            Place::Prefix(p) if self.config.node_prefix.is_within(&p) => Ok(true),
            Place::Prefix(p) if self.serves(&p) => {
                if self.enterprise_at_or_under(&p) {
                    return Ok(true);
                }
                let core = Arc::clone(self);
                self.reads
                    .run(move || {
                        let (own, deeper) = (format!("{p}/"), format!("{p}."));
                        Ok(core.any_key(own.as_bytes(), None)?
                            || core.any_key(deeper.as_bytes(), None)?)
                    })
                    .await
            }
            Place::Suffixes { prefix, start } if self.serves(&prefix) => {
                if start.is_empty()
                    && (prefix == self.config.node_prefix || self.is_enterprise(&prefix))
                {
                    return Ok(true);
                }
                let mut key = format!("{prefix}/").into_bytes();
                key.extend_from_slice(&start);
                let core = Arc::clone(self);
                // Keys that start with `key` and are greater than it: longer suffixes.
                self.reads.run(move || core.any_key(&key, Some(&key))).await
            }
            Place::Prefix(p) | Place::Suffixes { prefix: p, .. } => match &self.remote {
                Some(remote) => remote.delegated(&p).await,
                None => Ok(false),
            },
        }
    }

    /// Whether the records table has a key starting with `start` (and greater than `after`).
    fn any_key(&self, start: &[u8], after: Option<&[u8]>) -> Result<bool> {
        self.store
            .scan(Table::Records, start, after, 1)
            .map(|found| !found.is_empty())
            .map_err(crate::error::Error::internal)
    }

    fn is_enterprise(&self, prefix: &Prefix) -> bool {
        self.enterprises
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(prefix.as_str())
    }

    fn enterprise_at_or_under(&self, prefix: &Prefix) -> bool {
        let p = prefix.as_str();
        self.enterprises
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .any(|e| {
                e.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
    }
}
