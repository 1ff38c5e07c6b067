//! Identifiers: `<prefix>/<suffix>`, parsed once at the edge.
//!
//! Owns the syntax rules and the length limits. Pure: no I/O, no knowledge of storage or wire
//! formats. Everything past an API adapter takes [`Identifier`] or [`Prefix`], never `&str`.
//!
//! - The prefix is dot-separated segments of ASCII letters, digits and `-`, compared
//!   case-insensitively: it is stored lower-cased.
//! - The suffix is any UTF-8 without control characters; it may contain `/`, `.` and `:` and
//!   compares case-sensitively (stored as given).

use std::fmt;

/// Default maximum length of a whole identifier, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 255;
/// Default maximum length of a prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 64;

/// Length limits applied by the parser. Defaults follow DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_identifier_bytes: usize,
    pub max_prefix_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_identifier_bytes: MAX_IDENTIFIER_BYTES,
            max_prefix_bytes: MAX_PREFIX_BYTES,
        }
    }
}

/// Why a string is not a valid identifier or prefix. Each variant names one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("identifier has no '/' between prefix and suffix")]
    MissingSlash,
    #[error("prefix is empty")]
    EmptyPrefix,
    #[error("suffix is empty")]
    EmptySuffix,
    #[error("prefix has an empty segment (leading, trailing or doubled '.')")]
    EmptySegment,
    #[error("prefix segment contains {0:?}: only ASCII letters, digits and '-' are allowed")]
    BadSegmentChar(char),
    #[error("suffix contains control character U+{0:04X}")]
    ControlChar(u32),
    #[error("prefix is {len} bytes, longer than the limit of {max}")]
    PrefixTooLong { len: usize, max: usize },
    #[error("identifier is {len} bytes, longer than the limit of {max}")]
    IdentifierTooLong { len: usize, max: usize },
}

/// A normalised (lower-case) identifier prefix such as `88.101.5`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Parses and normalises a prefix with the default limits.
    pub fn parse(s: &str) -> Result<Prefix, ParseError> {
        Prefix::parse_with(s, &Limits::default())
    }

    /// Parses and normalises a prefix, rejecting it with the rule it breaks.
    pub fn parse_with(s: &str, limits: &Limits) -> Result<Prefix, ParseError> {
        Prefix::check(s, limits)?;
        Ok(Prefix(s.to_ascii_lowercase()))
    }

    /// The rule `s` breaks as a prefix, if any.
    fn check(s: &str, limits: &Limits) -> Result<(), ParseError> {
        if s.is_empty() {
            return Err(ParseError::EmptyPrefix);
        }
        if s.len() > limits.max_prefix_bytes {
            return Err(ParseError::PrefixTooLong {
                len: s.len(),
                max: limits.max_prefix_bytes,
            });
        }
        for segment in s.split('.') {
            if segment.is_empty() {
                return Err(ParseError::EmptySegment);
            }
            if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(ParseError::BadSegmentChar(c));
            }
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, most significant first (`88`, `101`, `5`).
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('.')
    }

    /// The enclosing prefix (`88.101` for `88.101.5`), or `None` for a single segment.
    pub fn parent(&self) -> Option<Prefix> {
        self.0.rfind('.').map(|i| Prefix(self.0[..i].to_owned()))
    }

    /// This prefix and each enclosing one, longest first: the walk of a longest-prefix match.
    pub fn ancestors_or_self(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        std::iter::once(s).chain(s.rmatch_indices('.').map(move |(i, _)| &s[..i]))
    }

    /// True if `self` equals `other` or lies under it (`88.101.5` is under `88.101`).
    pub fn is_within(&self, other: &Prefix) -> bool {
        within(&self.0, &other.0)
    }
}

/// True if normalised prefix text `inner` equals `outer` or lies under it.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'.')
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({})", self.0)
    }
}

/// A parsed identifier: normalised prefix + case-sensitive suffix.
///
/// Stored as one string `prefix/suffix` so that the storage key and the display form are the
/// same bytes, with the position of the separating `/` remembered.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    text: String,
    slash: usize,
}

impl Identifier {
    /// Parses with the default limits.
    pub fn parse(s: &str) -> Result<Identifier, ParseError> {
        Identifier::parse_with(s, &Limits::default())
    }

    /// Parses and normalises an identifier. The prefix ends at the first `/`; the suffix is
    /// everything after it (further `/` belong to the suffix).
    pub fn parse_with(s: &str, limits: &Limits) -> Result<Identifier, ParseError> {
        if s.len() > limits.max_identifier_bytes {
            return Err(ParseError::IdentifierTooLong {
                len: s.len(),
                max: limits.max_identifier_bytes,
            });
        }
        let slash = s.find('/').ok_or(ParseError::MissingSlash)?;
        let (prefix, suffix) = (&s[..slash], &s[slash + 1..]);
        Prefix::check(prefix, limits)?;
        if suffix.is_empty() {
            return Err(ParseError::EmptySuffix);
        }
        if let Some(c) = suffix.chars().find(|c| c.is_control()) {
            return Err(ParseError::ControlChar(c as u32));
        }
        // One allocation: the prefix lower-cased in place (it is ASCII once checked).
        let mut text = s.to_owned();
        text[..slash].make_ascii_lowercase();
        Ok(Identifier { text, slash })
    }

    /// Builds an identifier from an already-parsed prefix and a suffix.
    pub fn new(prefix: &Prefix, suffix: &str, limits: &Limits) -> Result<Identifier, ParseError> {
        Identifier::parse_with(&format!("{prefix}/{suffix}"), limits)
    }

    /// The normalised prefix part (`88.101.5`).
    pub fn prefix_str(&self) -> &str {
        &self.text[..self.slash]
    }

    /// True if the identifier's prefix is `prefix` or lies under it, without building it.
    pub fn is_within(&self, prefix: &Prefix) -> bool {
        within(self.prefix_str(), &prefix.0)
    }

    /// The normalised prefix as a typed value.
    pub fn prefix(&self) -> Prefix {
        Prefix(self.prefix_str().to_owned())
    }

    /// The identifier's text, without copying it.
    pub fn into_string(self) -> String {
        self.text
    }

    /// The suffix, exactly as registered.
    pub fn suffix(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// The canonical text, `prefix/suffix`; also the storage key.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Result<(&str, &str), ParseError>) {
        let got = Identifier::parse(input);
        match (&got, &expected) {
            (Ok(id), Ok((p, s))) => {
                assert_eq!(id.prefix_str(), *p, "prefix of {input:?}");
                assert_eq!(id.suffix(), *s, "suffix of {input:?}");
                assert_eq!(id.as_str(), format!("{p}/{s}"));
            }
            _ => assert_eq!(
                got.map(|i| i.to_string()),
                expected.map(|(p, s)| format!("{p}/{s}")),
                "{input:?}"
            ),
        }
    }

    #[test]
    fn accepts_real_forms() {
        check("88.118.8/JXDY2106023", Ok(("88.118.8", "JXDY2106023")));
        check("88.101.0042/001", Ok(("88.101.0042", "001")));
        check("88.608.8899/META_zj02", Ok(("88.608.8899", "META_zj02")));
        check(
            "88.101.5/BAT-2025-000001",
            Ok(("88.101.5", "BAT-2025-000001")),
        );
        check(
            "88.101.8/FIBRE/2025/B0007",
            Ok(("88.101.8", "FIBRE/2025/B0007")),
        );
        check("88.101.5/urn:part:42", Ok(("88.101.5", "urn:part:42")));
        check(
            "88.101.12/小龙虾-2025-0001",
            Ok(("88.101.12", "小龙虾-2025-0001")),
        );
        check("88.101.5/a.b.c", Ok(("88.101.5", "a.b.c")));
        check("88/x", Ok(("88", "x")));
        check("88.101.ab-C/x", Ok(("88.101.ab-c", "x")));
    }

    #[test]
    fn prefix_is_case_insensitive_suffix_is_not() {
        let a = Identifier::parse("88.101.AB/Part-X").unwrap();
        let b = Identifier::parse("88.101.ab/Part-X").unwrap();
        let c = Identifier::parse("88.101.ab/part-x").unwrap();
        assert_eq!(a, b);
        assert_ne!(b, c);
        assert_eq!(a.as_str(), "88.101.ab/Part-X");
    }

    #[test]
    fn rejects_each_rule() {
        use ParseError::*;
        check("88.101.5", Err(MissingSlash));
        check("", Err(MissingSlash));
        check("/abc", Err(EmptyPrefix));
        check("88.101.5/", Err(EmptySuffix));
        check(".88.101/x", Err(EmptySegment));
        check("88.101./x", Err(EmptySegment));
        check("88..101/x", Err(EmptySegment));
        check("88.10_1/x", Err(BadSegmentChar('_')));
        check("88.1 01/x", Err(BadSegmentChar(' ')));
        check("88.湖北/x", Err(BadSegmentChar('湖')));
        check("88.101/a\nb", Err(ControlChar(0x0a)));
        check("88.101/a\u{7f}", Err(ControlChar(0x7f)));
        check("88.101/a\u{9b}", Err(ControlChar(0x9b)));
        let long_prefix = format!("88.{}/x", "1".repeat(62));
        check(&long_prefix, Err(PrefixTooLong { len: 65, max: 64 }));
        let long_id = format!("88.101/{}", "x".repeat(249));
        check(&long_id, Err(IdentifierTooLong { len: 256, max: 255 }));
        let just_fits = format!("88.101/{}", "x".repeat(248));
        assert!(Identifier::parse(&just_fits).is_ok());
        let prefix_fits = format!("88.{}/x", "1".repeat(61));
        assert!(Identifier::parse(&prefix_fits).is_ok());
    }

    #[test]
    fn errors_name_the_rule() {
        let e = Identifier::parse("88.10_1/x").unwrap_err();
        assert!(e.to_string().contains("only ASCII letters, digits and '-'"));
        let e = Identifier::parse("88.101/").unwrap_err();
        assert_eq!(e.to_string(), "suffix is empty");
    }

    #[test]
    fn prefix_relations() {
        let p = Prefix::parse("88.101.5").unwrap();
        assert!(p.is_within(&Prefix::parse("88.101").unwrap()));
        assert!(p.is_within(&Prefix::parse("88.101.5").unwrap()));
        assert!(!p.is_within(&Prefix::parse("88.10").unwrap()));
        assert!(!Prefix::parse("88.101.50").unwrap().is_within(&p));
        assert_eq!(p.parent(), Some(Prefix::parse("88.101").unwrap()));
        assert_eq!(Prefix::parse("88").unwrap().parent(), None);
        let walk: Vec<_> = p.ancestors_or_self().collect();
        assert_eq!(walk, ["88.101.5", "88.101", "88"]);
    }

    proptest! {
        #[test]
        fn parse_display_round_trips(
            segs in prop::collection::vec("[A-Za-z0-9-]{1,6}", 1..5),
            suffix in "[^\\p{Cc}]{1,40}",
        ) {
            let prefix = segs.join(".");
            let text = format!("{prefix}/{suffix}");
            prop_assume!(prefix.len() <= MAX_PREFIX_BYTES && text.len() <= MAX_IDENTIFIER_BYTES);
            let id = Identifier::parse(&text).unwrap();
            prop_assert_eq!(id.prefix_str(), prefix.to_ascii_lowercase());
            prop_assert_eq!(id.suffix(), suffix.as_str());
            let again = Identifier::parse(id.as_str()).unwrap();
            prop_assert_eq!(again, id);
        }

        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = Identifier::parse(&s);
        }
    }
}
