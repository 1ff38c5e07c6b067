//! The mapping between identifiers and DNS names under a zone.
//!
//! ```text
//! 88.101.5/BAT-2025-000001   ⇄   _42_41_54-2025-000001._.5.101.88.<zone>
//! └prefix┘ └──suffix─────┘       └──suffix label(s)──┘ │ └prefix┘
//!                                                       separator label "_"
//! ```
//!
//! - Prefix segments, most significant last, one label each (already lower-case ASCII
//!   letters, digits and `-`), directly under the zone.
//! - A separator label `_`: prefix segments cannot contain `_`, so the boundary is never
//!   ambiguous, whatever the prefix depth.
//! - The suffix's UTF-8 bytes, escaped: `a`–`z`, `0`–`9` and `-` stand for themselves; every
//!   other byte (capitals, `.`, `/`, `:`, `_`, non-ASCII) is `_` followed by two lower-case
//!   hex digits. The escaped text holds no capital letters, so resolvers that change the
//!   case of names (0x20 randomisation) cannot change the identifier: decoding lower-cases
//!   first. `.` and `/` inside the suffix are escapes, never label boundaries.
//! - The escaped suffix is cut into labels of at most 63 bytes, never inside an escape; the
//!   labels read left to right.
//!
//! The encoding is canonical: a name whose decoding does not re-encode to the same name
//! (for example `_61` for `a`) does not exist. A DNS name holds at most 255 bytes, so
//! identifiers whose name would be longer (typically suffixes over ~100 bytes of capitals
//! or non-ASCII text) cannot be resolved over DNS; gRPC and HTTP serve them.

use hickory_proto::rr::Name;

use crate::identifier::Identifier;

/// Label separating the suffix labels from the prefix labels.
pub const SEPARATOR: &str = "_";
const MAX_LABEL: usize = 63;

/// Why an identifier has no DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the DNS name of this identifier would exceed 255 bytes")]
    TooLong,
}

fn escape(suffix: &str) -> String {
    let mut out = String::with_capacity(suffix.len() * 2);
    for b in suffix.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// Cuts escaped text into labels of at most 63 bytes without splitting an escape.
fn cut(escaped: &str) -> Vec<&str> {
    let b = escaped.as_bytes();
    let mut labels = Vec::new();
    let mut start = 0;
    while start < b.len() {
        let mut end = (start + MAX_LABEL).min(b.len());
        // Back off if the cut falls inside "_xx".
        if end < b.len() {
            if b[end - 1] == b'_' {
                end -= 1;
            } else if end >= 2 && b[end - 2] == b'_' {
                end -= 2;
            }
        }
        labels.push(&escaped[start..end]);
        start = end;
    }
    labels
}

/// The DNS name of `id` under `zone`.
pub fn encode(id: &Identifier, zone: &Name) -> Result<Name, NameError> {
    let escaped = escape(id.suffix());
    let mut labels: Vec<&[u8]> = cut(&escaped).into_iter().map(str::as_bytes).collect();
    labels.push(SEPARATOR.as_bytes());
    labels.extend(id.prefix_str().split('.').rev().map(str::as_bytes));
    let relative = Name::from_labels(labels).map_err(|_| NameError::TooLong)?;
    relative.append_domain(zone).map_err(|_| NameError::TooLong)
}

/// The identifier named by `name` under `zone`, if `name` is the canonical name of one.
/// Works on the label bytes as they are (lower-casing on the way), building nothing but
/// the identifier's text: it runs for every DNS query.
pub fn decode(name: &Name, zone: &Name) -> Option<Identifier> {
    if !zone.zone_of(name) {
        return None;
    }
    let own = (name.num_labels() as usize).checked_sub(zone.num_labels() as usize)?;
    let mut labels = name.iter().take(own);
    // Suffix labels up to the separator.
    let mut suffix = Vec::with_capacity(name.len());
    let mut suffix_labels: Vec<&[u8]> = Vec::with_capacity(1);
    loop {
        let label = labels.next()?;
        if label == SEPARATOR.as_bytes() {
            break;
        }
        unescape_into(label, &mut suffix)?;
        suffix_labels.push(label);
    }
    if suffix_labels.is_empty() {
        return None;
    }
    if suffix_labels.len() > 1 {
        // Several labels must be cut exactly as `cut` cuts (one label of ≤ 63 always is).
        let escaped = suffix_labels.concat().to_ascii_lowercase();
        let escaped = std::str::from_utf8(&escaped).ok()?;
        if !cut(escaped)
            .iter()
            .map(|l| l.len())
            .eq(suffix_labels.iter().map(|l| l.len()))
        {
            return None;
        }
    }
    // Prefix labels, most significant last.
    let prefix: Vec<&[u8]> = labels.collect();
    if prefix.is_empty() {
        return None;
    }
    let mut text = Vec::with_capacity(name.len() + suffix.len());
    for (i, segment) in prefix.iter().rev().enumerate() {
        if i > 0 {
            text.push(b'.');
        }
        text.extend(segment.iter().map(u8::to_ascii_lowercase));
    }
    text.push(b'/');
    text.extend_from_slice(&suffix);
    Identifier::parse(std::str::from_utf8(&text).ok()?).ok()
}

/// Appends the bytes an escaped label stands for; `None` unless it is canonical: literal
/// `a`–`z`, `0`–`9`, `-` (either case), escapes `_xx` only for the other bytes.
fn unescape_into(label: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while i < label.len() {
        let b = label[i].to_ascii_lowercase();
        if b == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            let digit = |c: u8| (c as char).to_digit(16);
            let byte = (digit(hex[0])? * 16 + digit(hex[1])?) as u8;
            if is_literal(byte) {
                return None;
            }
            out.push(byte);
            i += 3;
        } else if is_literal(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    Some(())
}

fn is_literal(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone() -> Name {
        Name::from_ascii("id.example.").unwrap()
    }

    fn check(id: &str, name: &str) {
        let id = Identifier::parse(id).unwrap();
        let got = encode(&id, &zone()).unwrap();
        assert_eq!(got.to_ascii(), name);
        assert_eq!(decode(&got, &zone()), Some(id));
    }

    #[test]
    fn documented_examples() {
        check(
            "88.101.5/BAT-2025-000001",
            "_42_41_54-2025-000001._.5.101.88.id.example.",
        );
        check("88.101.5/abc-1", "abc-1._.5.101.88.id.example.");
        check(
            "88.101.8/FIBRE/2025/B0007",
            "_46_49_42_52_45_2f2025_2f_420007._.8.101.88.id.example.",
        );
        check("88.101.12/虾", "_e8_99_be._.12.101.88.id.example.");
        check("88.101.ab/x.y:z_", "x_2ey_3az_5f._.ab.101.88.id.example.");
    }

    #[test]
    fn case_changes_by_resolvers_do_not_change_the_identifier() {
        let id = Identifier::parse("88.101.5/BAT-2025-000001").unwrap();
        let name = encode(&id, &zone()).unwrap().to_ascii().to_uppercase();
        assert_eq!(decode(&Name::from_ascii(&name).unwrap(), &zone()), Some(id));
        let name = encode(&Identifier::parse("88.101.5/x").unwrap(), &zone()).unwrap();
        assert_eq!(Name::from_ascii(name.to_ascii()).unwrap(), name);
    }

    #[test]
    fn long_suffixes_span_labels_without_splitting_escapes() {
        let suffix: String = "Ab".repeat(40);
        let id = Identifier::parse(&format!("88.101.5/{suffix}")).unwrap();
        let name = encode(&id, &zone()).unwrap();
        assert!(name.iter().all(|l| l.len() <= 63));
        assert!(name.num_labels() > 7);
        assert_eq!(decode(&name, &zone()), Some(id));
    }

    #[test]
    fn too_long_for_dns() {
        let id = Identifier::parse(&format!("88.101.5/{}", "Z".repeat(200))).unwrap();
        assert_eq!(encode(&id, &zone()), Err(NameError::TooLong));
    }

    #[test]
    fn names_that_are_not_identifiers() {
        for name in [
            "abc.5.101.88.id.example.",      // no separator
            "_.5.101.88.id.example.",        // empty suffix
            "abc._.id.example.",             // empty prefix
            "_4g._.5.101.88.id.example.",    // bad escape
            "_4._.5.101.88.id.example.",     // truncated escape
            "_61._.5.101.88.id.example.",    // non-canonical ('a' escaped)
            "_ff._.5.101.88.id.example.",    // not UTF-8
            "_0a._.5.101.88.id.example.",    // control character
            "abc._.5.101.88.other.example.", // another zone
            "id.example.",                   // the apex
        ] {
            assert_eq!(
                decode(&Name::from_ascii(name).unwrap(), &zone()),
                None,
                "{name}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trips(
            segs in prop::collection::vec("[a-z0-9-]{1,5}", 1..4),
            suffix in "[^\\p{Cc}]{1,30}",
        ) {
            let id = Identifier::parse(&format!("{}/{suffix}", segs.join("."))).unwrap();
            if let Ok(name) = encode(&id, &zone()) {
                prop_assert!(name.len() <= 255);
                prop_assert_eq!(decode(&name, &zone()), Some(id.clone()));
                let shouted = Name::from_labels(name.iter().map(|l| l.to_ascii_uppercase())).unwrap();
                prop_assert_eq!(decode(&shouted, &zone()), Some(id));
            }
        }

        #[test]
        fn decode_never_panics(labels in prop::collection::vec("[a-z0-9_-]{1,10}", 0..6)) {
            if let Ok(n) = Name::from_ascii(format!("{}.id.example.", labels.join("."))) {
                let _ = decode(&n, &zone());
            }
        }
    }
}
