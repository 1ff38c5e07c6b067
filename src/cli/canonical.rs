//! The canonical text of what a command acted on (an identifier, a prefix, a grant's
//! scope), as the node stores it: commands print this, not the caller's spelling.

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
