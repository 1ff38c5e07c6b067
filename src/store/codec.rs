//! The on-disk encodings, versioned and independent of the API protobuf.
//!
//! Every stored value starts with a format byte. Records (billions of them) use a compact
//! binary layout; the few administrative objects (enterprises, credentials, templates) are a
//! format byte followed by JSON, which keeps them readable with `ldb` and easy to evolve.
//!
//! Record, format 1:
//!
//! ```text
//! u8 1 | varint n_values | n × value
//! value = varint index | bytes type | u8 format | bytes data | varint ttl
//!       | zigzag-varint timestamp | u8 permission bits | varint n_refs | n_refs × (bytes identifier | varint index)
//! bytes = varint length | raw bytes
//! ```
//!
//! Record, format 2 (written only when a value has a data domain or risk level, so
//! unclassified records keep format 1, byte for byte): format 1's layout with one more byte
//! per value after the permission bits, `u8 domain | risk << 4` (domain 0 none, 1 rd,
//! 2 production, 3 operations, 4 management, 5 external; risk 0 none, 1 low, 2 medium,
//! 3 high). Format 1 records read as unclassified (no domain, no risk).
//!
//! Counters are 8 bytes, little-endian i64.

use serde::{de::DeserializeOwned, Serialize};

use crate::identifier::Identifier;
use crate::record::{DataDomain, Format, Permissions, Record, Reference, Risk, Value};

/// Format byte of records without classified values.
pub const RECORD_FORMAT_V1: u8 = 1;
/// Format byte of records with a data domain or risk level on some value.
pub const RECORD_FORMAT_V2: u8 = 2;
/// Format byte of the JSON-encoded administrative objects.
pub const JSON_FORMAT_V1: u8 = 1;

/// Why stored bytes could not be decoded (corruption or an unknown future format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty value")]
    Empty,
    #[error("unknown format byte {0}")]
    UnknownFormat(u8),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("varint overflows at byte {0}")]
    VarintOverflow(usize),
    #[error("bad field at byte {at}: {what}")]
    BadField { at: usize, what: &'static str },
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("json: {0}")]
    Json(String),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn format_byte(f: Format) -> u8 {
    match f {
        Format::String => 0,
        Format::Json => 1,
        Format::Binary => 2,
    }
}

fn sensitivity_byte(domain: Option<DataDomain>, risk: Option<Risk>) -> u8 {
    let d = match domain {
        None => 0,
        Some(DataDomain::Rd) => 1,
        Some(DataDomain::Production) => 2,
        Some(DataDomain::Operations) => 3,
        Some(DataDomain::Management) => 4,
        Some(DataDomain::External) => 5,
    };
    let r = match risk {
        None => 0,
        Some(Risk::Low) => 1,
        Some(Risk::Medium) => 2,
        Some(Risk::High) => 3,
    };
    d | r << 4
}

fn sensitivity_from(b: u8, at: usize) -> Result<(Option<DataDomain>, Option<Risk>), DecodeError> {
    let bad = |what| DecodeError::BadField { at, what };
    let domain = match b & 0x0f {
        0 => None,
        1 => Some(DataDomain::Rd),
        2 => Some(DataDomain::Production),
        3 => Some(DataDomain::Operations),
        4 => Some(DataDomain::Management),
        5 => Some(DataDomain::External),
        _ => return Err(bad("data domain")),
    };
    let risk = match b >> 4 {
        0 => None,
        1 => Some(Risk::Low),
        2 => Some(Risk::Medium),
        3 => Some(Risk::High),
        _ => return Err(bad("risk")),
    };
    Ok((domain, risk))
}

/// Encodes a record (values must already be validated).
pub fn encode_record(record: &Record) -> Vec<u8> {
    let size: usize = record
        .values
        .iter()
        .map(|v| 24 + v.value_type.len() + v.data.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    let classified = record
        .values
        .iter()
        .any(|v| v.domain.is_some() || v.risk.is_some());
    out.push(if classified {
        RECORD_FORMAT_V2
    } else {
        RECORD_FORMAT_V1
    });
    put_varint(&mut out, record.values.len() as u64);
    for v in &record.values {
        put_varint(&mut out, v.index as u64);
        put_bytes(&mut out, v.value_type.as_bytes());
        out.push(format_byte(v.format));
        put_bytes(&mut out, &v.data);
        put_varint(&mut out, v.ttl as u64);
        put_varint(&mut out, ((v.timestamp << 1) ^ (v.timestamp >> 63)) as u64);
        out.push(v.permissions.bits());
        if classified {
            out.push(sensitivity_byte(v.domain, v.risk));
        }
        put_varint(&mut out, v.references.len() as u64);
        for r in &v.references {
            put_bytes(&mut out, r.identifier.as_bytes());
            put_varint(&mut out, r.index as u64);
        }
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow(start))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let at = self.pos;
        u32::try_from(self.varint()?).map_err(|_| DecodeError::BadField { at, what })
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.buf.len()))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadField { at, what })
    }
}

/// Decodes a stored record. Never panics on arbitrary input.
pub fn decode_record(buf: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.byte().map_err(|_| DecodeError::Empty)?;
    if version != RECORD_FORMAT_V1 && version != RECORD_FORMAT_V2 {
        return Err(DecodeError::UnknownFormat(version));
    }
    let classified = version == RECORD_FORMAT_V2;
    let n = r.varint()? as usize;
    // Each value takes at least 8 bytes: a corrupt count cannot make us allocate wildly.
    let mut values = Vec::with_capacity(n.min(buf.len() / 8));
    for _ in 0..n {
        let index = r.u32("index")?;
        let value_type = r.string("type")?;
        let at = r.pos;
        let format = match r.byte()? {
            0 => Format::String,
            1 => Format::Json,
            2 => Format::Binary,
            _ => return Err(DecodeError::BadField { at, what: "format" }),
        };
        let data = r.bytes()?.to_vec();
        let ttl = r.u32("ttl")?;
        let z = r.varint()?;
        let timestamp = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let at = r.pos;
        let bits = r.byte()?;
        if bits > 0x1f {
            return Err(DecodeError::BadField {
                at,
                what: "permissions",
            });
        }
        let (domain, risk) = match classified {
            true => {
                let at = r.pos;
                sensitivity_from(r.byte()?, at)?
            }
            false => (None, None),
        };
        let nrefs = r.varint()? as usize;
        let mut references = Vec::with_capacity(nrefs.min(64));
        for _ in 0..nrefs {
            let at = r.pos;
            let text = r.string("reference")?;
            let identifier = Identifier::parse(&text).map_err(|_| DecodeError::BadField {
                at,
                what: "reference",
            })?;
            let index = r.u32("reference index")?;
            references.push(Reference { identifier, index });
        }
        values.push(Value {
            index,
            value_type,
            format,
            data,
            ttl,
            timestamp,
            permissions: Permissions::from_bits(bits),
            references,
            domain,
            risk,
        });
    }
    if r.pos != buf.len() {
        return Err(DecodeError::Trailing(buf.len() - r.pos));
    }
    Ok(Record { values })
}

/// Encodes an administrative object: format byte + JSON.
pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![JSON_FORMAT_V1];
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_writer(&mut out, value).expect("plain struct serialises");
    out
}

pub fn decode_json<T: DeserializeOwned>(buf: &[u8]) -> Result<T, DecodeError> {
    match buf.split_first() {
        None => Err(DecodeError::Empty),
        Some((&JSON_FORMAT_V1, rest)) => {
            serde_json::from_slice(rest).map_err(|e| DecodeError::Json(e.to_string()))
        }
        Some((&b, _)) => Err(DecodeError::UnknownFormat(b)),
    }
}

pub fn encode_counter(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Reads a counter; a malformed one reads as 0 (counters are advisory, never trusted for
/// authorisation).
pub fn decode_counter(b: &[u8]) -> i64 {
    <[u8; 8]>::try_from(b).map(i64::from_le_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value_strategy() -> impl Strategy<Value = Value> {
        (
            1u32..u32::MAX,
            "[A-Za-z_]{1,20}",
            prop_oneof![
                Just(Format::String),
                Just(Format::Json),
                Just(Format::Binary)
            ],
            prop::collection::vec(any::<u8>(), 0..200),
            any::<u32>(),
            any::<i64>(),
            0u8..32,
            prop::collection::vec(("[a-z0-9]{1,8}", any::<u32>()), 0..3),
            (0usize..6, 0usize..4),
        )
            .prop_map(
                |(index, value_type, format, data, ttl, timestamp, bits, refs, (d, r))| Value {
                    domain: d.checked_sub(1).map(|i| DataDomain::ALL[i]),
                    risk: r.checked_sub(1).map(|i| Risk::ALL[i]),
                    index,
                    value_type,
                    format,
                    data,
                    ttl,
                    timestamp,
                    permissions: Permissions::from_bits(bits),
                    references: refs
                        .into_iter()
                        .map(|(s, index)| Reference {
                            identifier: Identifier::parse(&format!("88.101/{s}")).unwrap(),
                            index,
                        })
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trips(values in prop::collection::vec(value_strategy(), 0..8)) {
            let record = Record { values };
            let bytes = encode_record(&record);
            prop_assert_eq!(decode_record(&bytes).unwrap(), record);
        }

        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(values in prop::collection::vec(value_strategy(), 1..4)) {
            let bytes = encode_record(&Record { values });
            for cut in 0..bytes.len() {
                prop_assert!(decode_record(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn format_is_stable() {
        // Pin the layout: a change here is an on-disk format change and needs a new version.
        let mut v = Value::text(1, "URL", "x");
        v.timestamp = 1;
        let bytes = encode_record(&Record { values: vec![v] });
        assert_eq!(
            bytes,
            [1, 1, 1, 3, b'U', b'R', b'L', 0, 1, b'x', 0x80, 0xa3, 0x05, 2, 0b1110, 0]
        );
        // Format 2: one more byte per value, domain | risk << 4 (production, high).
        let mut v = Value::text(1, "URL", "x");
        v.timestamp = 1;
        v.permissions
            .classify(crate::record::Classification::Private);
        v.domain = Some(DataDomain::Production);
        v.risk = Some(Risk::High);
        let bytes = encode_record(&Record {
            values: vec![v.clone()],
        });
        assert_eq!(
            bytes,
            [2, 1, 1, 3, b'U', b'R', b'L', 0, 1, b'x', 0x80, 0xa3, 0x05, 2, 0b1100, 0x32, 0]
        );
        assert_eq!(decode_record(&bytes).unwrap().values, [v]);
        let mut bad = bytes.clone();
        bad[15] = 0x36;
        assert!(matches!(
            decode_record(&bad),
            Err(DecodeError::BadField {
                what: "data domain",
                ..
            })
        ));
        bad[15] = 0x42;
        assert!(matches!(
            decode_record(&bad),
            Err(DecodeError::BadField { what: "risk", .. })
        ));
        assert_eq!(decode_record(&[3]), Err(DecodeError::UnknownFormat(3)));
        assert_eq!(decode_record(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn counters() {
        assert_eq!(decode_counter(&encode_counter(-42)), -42);
        assert_eq!(decode_counter(b"bad"), 0);
    }
}
