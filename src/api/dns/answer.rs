//! Positive answers, written straight into the wire format.
//!
//! Every resolution the node serves ends here, so this is the DNS hot path: the answer
//! is one buffer (header, the question as asked, one TXT and/or URI record per public
//! value with its owner name compressed to a pointer at the question, OPT when the query
//! had EDNS), with no intermediate message, record or name objects. Errors, NODATA and
//! the zone apex go through hickory-proto's `Message` (`super`).

use base64::Engine;
use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::RecordType;

use super::{MAX_UDP_PAYLOAD, URI};
use crate::record::{Format, Value};

const TXT: u16 = 16;
const OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// A compression pointer to the question's name, which always starts at offset 12.
const NAME_OF_QUESTION: [u8; 2] = [0xC0, 12];
/// Longest character-string in a TXT record (RFC 1035 §3.3).
const MAX_STRING: usize = 255;

/// Writes the documented TXT text of a value (`<index> <format> <type> <data>`) to `out`.
pub fn write_txt_text(out: &mut String, v: &Value) {
    use std::fmt::Write;
    let _ = write!(out, "{} {} ", v.index, v.format.name());
    for c in v.value_type.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out.push(' ');
    match v.format {
        Format::Binary => base64::engine::general_purpose::STANDARD.encode_string(&v.data, out),
        Format::String | Format::Json => out.push_str(&String::from_utf8_lossy(&v.data)),
    }
}

/// The documented TXT text of a value.
pub fn txt_text(v: &Value) -> String {
    let mut out = String::with_capacity(16 + v.value_type.len() + v.data.len() * 4 / 3);
    write_txt_text(&mut out, v);
    out
}

/// Writes `text` as TXT rdata: ≤ 255-byte character-strings cut on character boundaries.
fn put_character_strings(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    loop {
        let mut cut = rest.len().min(MAX_STRING);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(cut as u8);
        out.extend_from_slice(&rest.as_bytes()[..cut]);
        rest = &rest[cut..];
        if rest.is_empty() {
            return;
        }
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a record owned by the question's name; its rdata is whatever `rdata` writes.
/// False (and nothing appended) when the rdata exceeds 65,535 bytes.
fn put_record(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: impl FnOnce(&mut Vec<u8>)) -> bool {
    let start = out.len();
    out.extend_from_slice(&NAME_OF_QUESTION);
    put_u16(out, rtype);
    put_u16(out, CLASS_IN);
    out.extend_from_slice(&ttl.to_be_bytes());
    let len_at = out.len();
    put_u16(out, 0);
    rdata(out);
    match u16::try_from(out.len() - len_at - 2) {
        Ok(len) => {
            out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            true
        }
        Err(_) => {
            out.truncate(start);
            false
        }
    }
}

/// The OPT pseudo-record advertising our UDP payload size (EDNS version 0, no flags).
fn put_opt(out: &mut Vec<u8>) {
    out.push(0); // root name
    put_u16(out, OPT);
    put_u16(out, MAX_UDP_PAYLOAD);
    out.extend_from_slice(&0u32.to_be_bytes());
    put_u16(out, 0);
}

/// Writes the answer to `request` (one question, already checked) from the public
/// `values` of the identifier it names, within `limit` bytes: when the records do not fit,
/// the answer keeps the header, question and OPT and sets TC. Returns false, with `out`
/// unspecified, when no value answers the question's type (the caller answers NODATA).
pub fn write(
    out: &mut Vec<u8>,
    request: &Message,
    authoritative: bool,
    values: &[Value],
    limit: usize,
) -> bool {
    let query = &request.queries[0];
    let qtype = query.query_type();
    let want_txt = matches!(qtype, RecordType::TXT | RecordType::ANY);
    let want_uri = qtype == URI || qtype == RecordType::ANY;
    let meta = &request.metadata;
    out.clear();
    put_u16(out, meta.id);
    let opcode = u8::from(OpCode::Query) << 3;
    out.push(0x80 | opcode | if authoritative { 0x04 } else { 0 } | meta.recursion_desired as u8);
    out.push(0); // RA, Z, AD, CD clear; NOERROR
    put_u16(out, 1); // QDCOUNT
    put_u16(out, 0); // ANCOUNT, set below
    put_u16(out, 0); // NSCOUNT
    put_u16(out, request.edns.is_some() as u16); // ARCOUNT
    for label in query.name().iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    put_u16(out, qtype.into());
    put_u16(out, query.query_class().into());
    let question_end = out.len();
    let mut answers: u16 = 0;
    let mut fits = true;
    let mut text = String::new();
    for v in values.iter().filter(|v| v.permissions.public_read) {
        if want_txt {
            text.clear();
            write_txt_text(&mut text, v);
            fits &= put_record(out, TXT, v.ttl, |o| put_character_strings(o, &text));
            answers += 1;
        }
        if want_uri && v.value_type.eq_ignore_ascii_case("URL") && v.format != Format::Binary {
            // RFC 7553 §4.5: priority, weight, target.
            fits &= put_record(out, URI.into(), v.ttl, |o| {
                put_u16(o, 10);
                put_u16(o, 1);
                o.extend_from_slice(&v.data);
            });
            answers += 1;
        }
    }
    if answers == 0 {
        return false;
    }
    if request.edns.is_some() {
        put_opt(out);
    }
    if fits && out.len() <= limit {
        out[6..8].copy_from_slice(&answers.to_be_bytes());
        return true;
    }
    // Too big for this transport: header, question and OPT only, TC set.
    out.truncate(question_end);
    out[2] |= 0x02;
    if request.edns.is_some() {
        put_opt(out);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::{DNSClass, Name, RData};

    fn query(qtype: RecordType, edns: bool) -> Message {
        let mut m = Message::query();
        m.metadata.id = 4321;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            Name::from_ascii("Abc-1._.5.101.88.Id.Example.").unwrap(),
            qtype,
        ));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        m
    }

    fn values() -> Vec<Value> {
        let mut hidden = Value::text(3, "secret", "x");
        hidden.permissions.public_read = false;
        let mut binary = Value::text(4, "my type%", "");
        binary.format = Format::Binary;
        binary.data = vec![0, 1, 2];
        vec![
            Value::text(1, "URL", "https://example.cn/p/1"),
            Value::text(2, "note", &"汉".repeat(100)),
            hidden,
            binary,
        ]
    }

    fn texts(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8(s.to_vec()).unwrap())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_parse_back_with_every_public_value() {
        for edns in [false, true] {
            let request = query(RecordType::ANY, edns);
            let mut out = Vec::new();
            assert!(write(&mut out, &request, true, &values(), 65_535));
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.id, 4321);
            assert!(m.metadata.authoritative && m.metadata.recursion_desired);
            assert!(!m.metadata.truncation);
            assert_eq!(m.queries, request.queries);
            assert_eq!(m.edns.is_some(), edns);
            assert_eq!(
                texts(&m),
                [
                    "1 string URL https://example.cn/p/1".to_owned(),
                    format!("2 string note {}", "汉".repeat(100)),
                    "4 binary my%20type%25 AAEC".to_owned(),
                ]
            );
            let uri: Vec<_> = m
                .answers
                .iter()
                .filter(|r| r.record_type() == URI)
                .collect();
            assert_eq!(uri.len(), 1);
            for r in &m.answers {
                assert_eq!(r.name, request.queries[0].name().clone());
                assert_eq!(r.dns_class, DNSClass::IN);
            }
            // The long text is cut into character-strings on character boundaries.
            let long = m.answers.iter().find_map(|r| match &r.data {
                RData::TXT(t) if t.txt_data.len() > 1 => Some(t.txt_data.len()),
                _ => None,
            });
            assert_eq!(long, Some(2));
        }
    }

    #[test]
    fn only_the_asked_type_and_nothing_when_none_matches() {
        let mut out = Vec::new();
        assert!(write(&mut out, &query(URI, false), false, &values(), 512));
        let m = Message::from_vec(&out).unwrap();
        assert!(!m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].record_type(), URI);
        let text_only = vec![Value::text(2, "note", "n")];
        assert!(!write(&mut out, &query(URI, false), true, &text_only, 512));
        assert!(!write(
            &mut out,
            &query(RecordType::A, false),
            true,
            &values(),
            512
        ));
    }

    #[test]
    fn answers_over_the_limit_are_truncated() {
        let mut out = Vec::new();
        let mut many = values();
        many.push(Value::text(5, "note", &"z".repeat(200)));
        assert!(write(
            &mut out,
            &query(RecordType::TXT, true),
            true,
            &many,
            512
        ));
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert!(m.edns.is_some());
        assert_eq!(m.queries.len(), 1);
        // An rdata over 65,535 bytes cannot be sent on any transport.
        let huge = vec![Value::text(1, "note", &"y".repeat(70_000))];
        assert!(write(
            &mut out,
            &query(RecordType::TXT, false),
            true,
            &huge,
            65_535
        ));
        assert!(Message::from_vec(&out).unwrap().metadata.truncation);
    }
}
