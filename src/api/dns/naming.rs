//! The mapping between identifiers and DNS names under a zone, and the places on the way.
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
//! - The suffix's UTF-8 bytes, cut into chunks of [`CHUNK`] (21) bytes, the last one
//!   shorter or equal, each chunk one label, escaped: `a`–`z`, `0`–`9` and `-` stand for
//!   themselves; every other byte (capitals, `.`, `/`, `:`, `_`, non-ASCII) is `_` followed
//!   by two lower-case hex digits, so a chunk takes at most 63 characters, a label's limit.
//!   The first chunk is the label nearest `_`: suffix labels read right to left, like the
//!   prefix's. `88.101.5/ABCDEFGHIJKLMNOPQRSTUVWXYZ` is
//!   `_56_57_58_59_5a._41_42…_55._.5.101.88.<zone>`. A suffix of at most 21 bytes is one
//!   label. The escaped text holds no capital letters, so resolvers that change the case
//!   of names (0x20 randomisation) cannot change the identifier: decoding lower-cases
//!   first. `.` and `/` inside the suffix are escapes, never label boundaries.
//!
//! The encoding is canonical: a name whose decoding does not re-encode to the same name
//! (for example `_61` for `a`, or a label nearer `_` than the last that holds fewer than 21
//! bytes) does not exist. A DNS name holds at most 255 bytes, so identifiers whose name
//! would be longer (typically suffixes over ~100 bytes of capitals or non-ASCII text)
//! cannot be resolved over DNS; gRPC and HTTP serve them.
//!
//! **Empty non-terminals.** Every ancestor of an identifier's name exists in DNS: it must
//! be answered NODATA, not NXDOMAIN, which says nothing lies below (RFC 8020) and stops
//! resolvers that minimise their queries (RFC 9156). The ancestors are the prefix's names
//! (`88`, `101.88`, `5.101.88`), the separator under it (`_.5.101.88`) and, for suffixes
//! longer than a chunk, the names of their first 21·j bytes (`_41…_55._.5.101.88`).
//! [`place`] maps such a name to a [`Place`] and the core says whether anything lies
//! there. The suffix labels follow the suffix's byte order in chunks of a fixed number of
//! bytes so that this question is one seek in the store's ordered keys: "an identifier of
//! the prefix whose suffix starts with these 21·j bytes and is longer". (Labels cut
//! greedily at 63 characters and read left to right, as names were before, make the
//! ancestor the *end* of a suffix: answering it would need an index of such tails, kept
//! by every write path.) Only names of whole chunks can have anything below them.

use hickory_proto::rr::Name;

use crate::identifier::{Identifier, Prefix};
use crate::resolver::Place;

/// Label separating the suffix labels from the prefix labels.
pub const SEPARATOR: &str = "_";
/// Suffix bytes per label: escaped, 21 bytes take at most 63 characters.
pub const CHUNK: usize = 21;

/// Why an identifier has no DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the DNS name of this identifier would exceed 255 bytes")]
    TooLong,
}

fn escape(chunk: &[u8]) -> String {
    let mut out = String::with_capacity(chunk.len() * 3);
    for &b in chunk {
        if is_literal(b) {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// The DNS name of `id` under `zone`.
pub fn encode(id: &Identifier, zone: &Name) -> Result<Name, NameError> {
    let chunks: Vec<String> = id.suffix().as_bytes().chunks(CHUNK).map(escape).collect();
    let mut labels: Vec<&[u8]> = chunks.iter().rev().map(String::as_bytes).collect();
    labels.push(SEPARATOR.as_bytes());
    labels.extend(id.prefix_str().split('.').rev().map(str::as_bytes));
    let relative = Name::from_labels(labels).map_err(|_| NameError::TooLong)?;
    relative.append_domain(zone).map_err(|_| NameError::TooLong)
}

/// A name's labels below the zone: the suffix labels (as in the name, the last chunk
/// first), whether a separator follows them, and the prefix labels (least significant
/// first). Without a separator every label is a prefix label.
struct Parts<'a> {
    suffix: Vec<&'a [u8]>,
    separated: bool,
    prefix: Vec<&'a [u8]>,
}

fn parts<'a>(name: &'a Name, zone: &Name) -> Option<Parts<'a>> {
    if !zone.zone_of(name) {
        return None;
    }
    let own = (name.num_labels() as usize).checked_sub(zone.num_labels() as usize)?;
    let mut labels = name.iter().take(own);
    let mut suffix = Vec::with_capacity(2);
    let separated = loop {
        match labels.next() {
            None => break false,
            Some(l) if l == SEPARATOR.as_bytes() => break true,
            Some(l) => suffix.push(l),
        }
    };
    if !separated {
        return Some(Parts {
            prefix: suffix,
            separated,
            suffix: Vec::new(),
        });
    }
    Some(Parts {
        suffix,
        separated,
        prefix: labels.collect(),
    })
}

/// Appends the bytes of the suffix labels, first chunk first; `None` unless they are
/// canonical: every label but the last chunk holds exactly [`CHUNK`] bytes, the last
/// 1 to [`CHUNK`]. Returns whether the last chunk is whole.
fn unescape_suffix(labels: &[&[u8]], out: &mut Vec<u8>) -> Option<bool> {
    let mut whole = false;
    for (i, label) in labels.iter().rev().enumerate() {
        let before = out.len();
        unescape_into(label, out)?;
        let n = out.len() - before;
        whole = n == CHUNK;
        if n == 0 || n > CHUNK || (!whole && i + 1 < labels.len()) {
            return None;
        }
    }
    Some(whole)
}

/// The prefix text of prefix labels given least significant first (lower-cased).
fn prefix_text(labels: &[&[u8]], out: &mut Vec<u8>) {
    for (i, segment) in labels.iter().rev().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend(segment.iter().map(u8::to_ascii_lowercase));
    }
}

/// The identifier named by `name` under `zone`, if `name` is the canonical name of one.
/// Works on the label bytes as they are (lower-casing on the way), building nothing but
/// the identifier's text: it runs for every DNS query.
pub fn decode(name: &Name, zone: &Name) -> Option<Identifier> {
    let parts = parts(name, zone)?;
    if parts.suffix.is_empty() || parts.prefix.is_empty() {
        return None;
    }
    let mut text = Vec::with_capacity(name.len());
    prefix_text(&parts.prefix, &mut text);
    text.push(b'/');
    unescape_suffix(&parts.suffix, &mut text)?;
    Identifier::parse(std::str::from_utf8(&text).ok()?).ok()
}

/// The place `name` stands for when names may lie below it: a prefix's name, the
/// separator under a prefix, or the name of a suffix's first whole chunks (which may also
/// be an identifier's name). `None` when nothing can lie below: the apex, names that are
/// not canonical, names whose last suffix label holds less than a whole chunk.
pub fn place(name: &Name, zone: &Name) -> Option<Place> {
    let parts = parts(name, zone)?;
    if parts.prefix.is_empty() {
        return None;
    }
    let mut text = Vec::with_capacity(name.len());
    prefix_text(&parts.prefix, &mut text);
    let prefix = Prefix::parse(std::str::from_utf8(&text).ok()?).ok()?;
    if !parts.separated {
        return Some(Place::Prefix(prefix));
    }
    let mut start = Vec::with_capacity(parts.suffix.len() * CHUNK);
    if !parts.suffix.is_empty() && !unescape_suffix(&parts.suffix, &mut start)? {
        return None;
    }
    Some(Place::Suffixes { prefix, start })
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
    fn long_suffixes_are_cut_in_chunks_of_21_bytes_first_chunk_nearest_the_separator() {
        check(
            "88.101.5/ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "_56_57_58_59_5a._41_42_43_44_45_46_47_48_49_4a_4b_4c_4d_4e_4f_50_51_52_53_54_55\
             ._.5.101.88.id.example.",
        );
        check(
            "88.101.5/abcdefghijklmnopqrstuvwxyz0123",
            "vwxyz0123.abcdefghijklmnopqrstu._.5.101.88.id.example.",
        );
        // Exactly one chunk: one label, as every suffix of up to 21 bytes.
        check(
            "88.101.5/abcdefghijklmnopqrstu",
            "abcdefghijklmnopqrstu._.5.101.88.id.example.",
        );
        // 21 three-byte characters: 63 bytes, three chunks of seven characters each.
        let suffix = "汉".repeat(21);
        let id = Identifier::parse(&format!("88.101.5/{suffix}")).unwrap();
        let name = encode(&id, &zone()).unwrap();
        let labels: Vec<&[u8]> = name.iter().collect();
        assert_eq!(labels.len(), 3 + 1 + 3 + 2);
        assert!(labels[..3].iter().all(|l| l.len() == 63));
        assert_eq!(decode(&name, &zone()), Some(id));
        // A chunk boundary inside a character: each label is bytes, the whole is UTF-8.
        check(
            "88.101.5/abcdefghijklmnopqrst虾",
            "_99_be.abcdefghijklmnopqrst_e8._.5.101.88.id.example.",
        );
    }

    fn place_of(name: &str) -> Option<Place> {
        place(&Name::from_ascii(name).unwrap(), &zone())
    }

    fn prefix(p: &str) -> Prefix {
        Prefix::parse(p).unwrap()
    }

    #[test]
    fn places_of_names_that_can_have_names_below() {
        let suffixes = |p: &str, start: &[u8]| {
            Some(Place::Suffixes {
                prefix: prefix(p),
                start: start.to_vec(),
            })
        };
        let table: [(&str, Option<Place>); 14] = [
            ("88.id.example.", Some(Place::Prefix(prefix("88")))),
            ("101.88.id.example.", Some(Place::Prefix(prefix("88.101")))),
            (
                "5.101.88.Id.Example.",
                Some(Place::Prefix(prefix("88.101.5"))),
            ),
            (
                "X-1.5.101.88.id.example.",
                Some(Place::Prefix(prefix("88.101.5.x-1"))),
            ),
            ("_.5.101.88.id.example.", suffixes("88.101.5", b"")),
            (
                "abcdefghijklmnopqrstu._.5.101.88.id.example.",
                suffixes("88.101.5", b"abcdefghijklmnopqrstu"),
            ),
            (
                "abcdefghijklmnopqrst_e8._.5.101.88.id.example.",
                suffixes("88.101.5", b"abcdefghijklmnopqrst\xe8"),
            ),
            ("abc._.5.101.88.id.example.", None), // a last chunk: a leaf
            // The second whole chunk is the name's first label: a tail again.
            (
                "vwxyz0123456789abcdef.abcdefghijklmnopqrstu._.5.101.88.id.example.",
                suffixes("88.101.5", b"abcdefghijklmnopqrstuvwxyz0123456789abcdef"),
            ),
            // Not canonical: a short chunk nearest `_`, a 22-byte label, an escaped literal.
            ("abcdefghijklmnopqrstu.abc._.5.101.88.id.example.", None),
            ("abcdefghijklmnopqrstuv._.5.101.88.id.example.", None),
            ("_61bcdefghijklmnopqrstu._.5.101.88.id.example.", None),
            ("_.id.example.", None), // no prefix
            ("id.example.", None),   // the apex
        ];
        for (name, expected) in table {
            assert_eq!(place_of(name), expected, "{name}");
        }
        for name in [
            "a_b.88.id.example.",
            "_._.5.101.88.id.example.",
            "x.other.example.",
        ] {
            assert_eq!(place_of(name), None, "{name}");
        }
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
            // 22 bytes in one label; a short chunk nearer `_` than the last.
            "abcdefghijklmnopqrstuv._.5.101.88.id.example.",
            "abcdefghijklmnopqrstu.abc._.5.101.88.id.example.",
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
        fn every_ancestor_of_a_name_is_a_place_that_holds_its_identifier(
            segs in prop::collection::vec("[a-z0-9-]{1,5}", 1..4),
            suffix in "[^\\p{Cc}]{1,60}",
        ) {
            let id = Identifier::parse(&format!("{}/{suffix}", segs.join("."))).unwrap();
            if let Ok(name) = encode(&id, &zone()) {
                for n in 1..name.num_labels() - zone().num_labels() {
                    let ancestor = name.trim_to(zone().num_labels() as usize + n as usize);
                    let holds = match place(&ancestor, &zone()) {
                        Some(Place::Prefix(p)) => id.is_within(&p),
                        Some(Place::Suffixes { prefix, start }) => {
                            id.prefix() == prefix
                                && id.suffix().len() > start.len()
                                && id.suffix().as_bytes().starts_with(&start)
                        }
                        None => false,
                    };
                    prop_assert!(holds, "{} above {}", ancestor, name);
                }
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
