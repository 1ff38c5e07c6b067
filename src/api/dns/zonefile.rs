//! A value's TXT record in zone-file text (RFC 1035 §5.1), for a reference DNS server
//! (Knot DNS, NSD) that must answer what the node answers: the same character-strings,
//! byte for byte, as `answer` puts on the wire.
//!
//! Owns the presentation form only: which values are answered (the public ones), their
//! text (`answer::write_txt_text`) and where it is cut into character-strings (the rule
//! of `answer`) are the answer's, followed here, never decided.

use std::fmt::Write;

use hickory_proto::rr::Name;

use super::answer::write_txt_text;
use crate::record::Value;

/// Longest character-string in a TXT record (RFC 1035 §3.3).
const MAX_STRING: usize = 255;

/// Appends one `<owner> <ttl> IN TXT "…" …` line per value the node answers with a TXT
/// record for `owner` (the public ones, in order), each with the value's TTL and the
/// character-strings of its text as the node's answer holds them.
///
/// A value whose text does not fit one record's rdata (65,535 bytes) is written anyway:
/// the node answers it truncated, and a zone server refuses the zone, which says so.
pub fn write_txt_records(out: &mut String, owner: &Name, values: &[Value]) {
    let owner = owner.to_ascii();
    let mut text = String::new();
    for v in values.iter().filter(|v| v.permissions.public_read) {
        text.clear();
        write_txt_text(&mut text, v);
        let _ = write!(out, "{owner} {} IN TXT ", v.ttl);
        write_character_strings(out, &text);
        out.push('\n');
    }
}

/// Appends `text` as the rdata of one TXT record: quoted character-strings separated by
/// spaces, each at most 255 bytes and cut on a character boundary (as `answer` cuts
/// them), so a character is never split across strings. Printable ASCII stands for itself
/// except `"` and `\` (`\"`, `\\`); every other byte (control, DEL, UTF-8 above ASCII) is
/// a `\DDD` decimal escape, so the output is printable ASCII whatever the text.
pub fn write_character_strings(out: &mut String, text: &str) {
    for (i, s) in character_strings(text).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('"');
        for &b in s.as_bytes() {
            match b {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x20..=0x7E => out.push(b as char),
                _ => {
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
        out.push('"');
    }
}

/// `text` cut into ≤ 255-byte pieces on character boundaries: the rule of `answer`'s
/// `put_character_strings`, which an empty text also leaves one (empty) string.
fn character_strings(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        let mut cut = r.len().min(MAX_STRING);
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = r.split_at(cut);
        rest = (!tail.is_empty()).then_some(tail);
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Format;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{RData, RecordType};

    /// Parses zone-file TXT rdata (quoted character-strings) back to their bytes; panics
    /// on anything the escaping must never produce (unquoted text, bytes outside printable
    /// ASCII, a bad escape).
    fn parse(rdata: &str) -> Vec<Vec<u8>> {
        let b = rdata.as_bytes();
        assert!(
            b.iter().all(|c| (0x20..=0x7E).contains(c)),
            "not printable ASCII: {rdata:?}"
        );
        let mut strings = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if !strings.is_empty() {
                assert_eq!(b[i], b' ', "strings are separated by a space: {rdata:?}");
                i += 1;
            }
            assert_eq!(b[i], b'"', "a string opens with a quote: {rdata:?}");
            i += 1;
            let mut s = Vec::new();
            loop {
                match b[i] {
                    b'"' => break,
                    b'\\' if b[i + 1].is_ascii_digit() => {
                        let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
                        assert!(digits.bytes().all(|d| d.is_ascii_digit()), "{rdata:?}");
                        s.push(digits.parse::<u8>().expect("\\DDD is at most 255"));
                        i += 4;
                    }
                    b'\\' => {
                        assert!(matches!(b[i + 1], b'"' | b'\\'), "{rdata:?}");
                        s.push(b[i + 1]);
                        i += 2;
                    }
                    c => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            i += 1; // the closing quote
            assert!(s.len() <= MAX_STRING, "a string of {} bytes", s.len());
            strings.push(s);
        }
        strings
    }

    fn rdata(text: &str) -> String {
        let mut out = String::new();
        write_character_strings(&mut out, text);
        out
    }

    /// The zone text of `text`, and its bytes parsed back, cut where `answer` cuts.
    fn check(text: &str, expected: &str) {
        let written = rdata(text);
        assert_eq!(written, expected, "{text:?}");
        let strings = parse(&written);
        assert_eq!(strings.concat(), text.as_bytes(), "{text:?}");
    }

    #[test]
    fn ascii_stands_for_itself() {
        check(
            "1 string URL https://example.cn/p/1",
            r#""1 string URL https://example.cn/p/1""#,
        );
        check("", r#""""#);
        check(
            " ~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
            r#"" ~!#$%&'()*+,-./:;<=>?@[]^_`{|}""#,
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        check(r#"say "hi""#, r#""say \"hi\"""#);
        check(r"C:\dir\", r#""C:\\dir\\""#);
        check(r#"\"\"#, r#""\\\"\\""#);
        check(r"\065", r#""\\065""#);
    }

    #[test]
    fn control_bytes_and_del_are_decimal_escapes() {
        check("a\tb\nc\r\0", r#""a\009b\010c\013\000""#);
        check("\x1f\x7f", r#""\031\127""#);
    }

    #[test]
    fn chinese_text_is_escaped_and_round_trips() {
        // 制 is E5 88 B6, 动 is E5 8A A8.
        check("制动", r#""\229\136\182\229\138\168""#);
        for text in [
            "2 string productName 潜江小龙虾",
            "3 string spec G.652.D 光纤 \"单模\"\\",
            "4 string note 恩施硒茶 ✓ 𝄞 é",
        ] {
            let written = rdata(text);
            assert_eq!(parse(&written), [text.as_bytes()], "{text:?}");
        }
    }

    #[test]
    fn strings_of_255_and_256_bytes() {
        let s255 = "a".repeat(255);
        assert_eq!(parse(&rdata(&s255)), [s255.as_bytes()]);
        let s256 = "b".repeat(256);
        assert_eq!(parse(&rdata(&s256)), [&s256.as_bytes()[..255], &b"b"[..]]);
        let s510 = "c".repeat(510);
        assert_eq!(
            parse(&rdata(&s510)),
            [&s510.as_bytes()[..255], &s510.as_bytes()[255..]]
        );
    }

    #[test]
    fn a_character_across_byte_255_goes_whole_to_the_next_string() {
        // 汉 is 3 bytes at 253..256: the first string stops before it.
        let text = format!("{}汉z", "a".repeat(253));
        let strings = parse(&rdata(&text));
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0], "a".repeat(253).as_bytes());
        assert_eq!(strings[1], "汉z".as_bytes());
        for s in &strings {
            assert!(std::str::from_utf8(s).is_ok(), "a split character: {s:?}");
        }
        // Only 3-byte characters (255 = 85 × 3, so 86 of them cross it): 85 + 1.
        let han = "汉".repeat(86);
        let strings = parse(&rdata(&han));
        assert_eq!(strings, [&han.as_bytes()[..255], &han.as_bytes()[255..]]);
        // A 4-byte character across it: the first string holds 253 bytes.
        let text = format!("{}𝄞", "a".repeat(253));
        let strings = parse(&rdata(&text));
        assert_eq!(
            strings.iter().map(Vec::len).collect::<Vec<_>>(),
            [253, 4],
            "𝄞 at 253..257"
        );
    }

    /// The TXT records of `owner` as a zone server loads them: (TTL, character-strings).
    fn zone_records(lines: &str, owner: &Name) -> Vec<(u32, Vec<Vec<u8>>)> {
        let prefix = format!("{} ", owner.to_ascii());
        lines
            .lines()
            .map(|line| {
                let rest = line.strip_prefix(&prefix).expect("owner first");
                let (ttl, rest) = rest.split_once(' ').unwrap();
                let rest = rest.strip_prefix("IN TXT ").expect("IN TXT after the TTL");
                (ttl.parse().unwrap(), parse(rest))
            })
            .collect()
    }

    #[test]
    fn the_zone_holds_the_character_strings_of_the_node_answer() {
        let owner = Name::from_ascii("_42_52_4b-0000000001._.5.101.88.id.example.").unwrap();
        let mut hidden = Value::text(3, "secret", "not in DNS");
        hidden.permissions.public_read = false;
        let mut binary = Value::text(4, "my type%", "");
        binary.format = Format::Binary;
        binary.data = (0..=255).collect();
        let mut invalid = Value::text(5, "raw", "");
        invalid.data = vec![b'x', 0xE6, 0xB1, b'y', 0xFF]; // not UTF-8: U+FFFD in the answer
        let mut short = Value::text(6, "batchNo", "BRK202403-B0042");
        short.ttl = 60;
        let values = vec![
            Value::text(
                1,
                "URL",
                "https://trace.e88-101-5.example.cn/p/BRK-0000000001",
            ),
            Value::text(2, "productName \"制动盘\"\\", &"制动盘".repeat(40)),
            hidden,
            binary,
            invalid,
            short,
            Value::text(7, "note", &format!("{}汉", "a".repeat(240))),
            Value::text(8, "ctl", "a\tb\r\n\x7f"),
        ];
        let mut zone = String::new();
        write_txt_records(&mut zone, &owner, &values);
        let from_zone = zone_records(&zone, &owner);

        let mut request = Message::query();
        request.add_query(Query::query(owner.clone(), RecordType::TXT));
        let mut wire = Vec::new();
        assert!(super::super::answer::write(
            &mut wire, &request, true, &values, 65_535
        ));
        let answer = Message::from_vec(&wire).unwrap();
        let from_node: Vec<(u32, Vec<Vec<u8>>)> = answer
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::TXT(t) => (r.ttl, t.txt_data.iter().map(|s| s.to_vec()).collect()),
                other => panic!("not TXT: {other:?}"),
            })
            .collect();
        assert_eq!(from_zone.len(), 7, "one record per public value");
        assert_eq!(from_zone, from_node);
        // Several strings somewhere, so the cut is compared too.
        assert!(from_zone.iter().any(|(_, strings)| strings.len() > 1));
    }

    #[test]
    fn one_line_per_public_value() {
        let owner = Name::from_ascii("a._.5.101.88.id.example.").unwrap();
        let mut hidden = Value::text(2, "secret", "x");
        hidden.permissions.public_read = false;
        let mut zone = String::new();
        write_txt_records(
            &mut zone,
            &owner,
            &[Value::text(1, "URL", "https://example.cn/p/1"), hidden],
        );
        assert_eq!(
            zone,
            "a._.5.101.88.id.example. 86400 IN TXT \"1 string URL https://example.cn/p/1\"\n"
        );
    }
}
