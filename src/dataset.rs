//! The JSON record format of files: seeds, `idnode register --file`, and JSON output.
//!
//! One record is a JSON object (one per line in `.jsonl` files):
//!
//! ```json
//! {"identifier": "88.101.5/BAT-2025-000001",
//!  "values": [{"index": 1, "type": "URL", "data": "https://example.cn/p/1"},
//!             {"index": 5, "type": "supplierContact", "data": "qa@example.cn", "permissions": "1100"}]}
//! ```
//!
//! Value fields: `index` (required), `type` (required), `data` (string; base64 when
//! `format` is `binary`), `format` (`string` default, `json`, `binary`), `ttl` (seconds,
//! default 86400), `permissions` (`admin_read admin_write public_read public_write`, default
//! `1110`), `classification` (`public`, `partner`, `private`; overrides the read bits),
//! `references` (`[{"identifier": ..., "index": ...}]`), `domain` (`rd`, `production`,
//! `operations`, `management`, `external`), `risk` (`low`, `medium`, `high`: high needs
//! `private`, medium at least `partner`), and on output `timestamp`.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::identifier::Identifier;
use crate::record::{
    Classification, DataDomain, Format, Permissions, Record, Reference, Risk, Value, DEFAULT_TTL,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordJson {
    pub identifier: String,
    pub values: Vec<ValueJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueJson {
    pub index: u32,
    #[serde(rename = "type")]
    pub value_type: String,
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// `public`, `partner` or `private`; overrides the read bits of `permissions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// `rd`, `production`, `operations`, `management` or `external`; absent: not classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `low`, `medium` or `high`; absent: not classified. High needs `private`, medium at
    /// least `partner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceJson {
    pub identifier: String,
    pub index: u32,
}

/// Why a JSON record could not become a domain record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("value {index}: unknown format {format:?} (string, json or binary)")]
    Format { index: u32, format: String },
    #[error("value {index}: permissions {0:?} must be 4 characters of 0/1", .perms)]
    Permissions { index: u32, perms: String },
    #[error("value {index}: classification {classification:?} is not public, partner or private")]
    Classification { index: u32, classification: String },
    #[error(
        "value {index}: data domain {domain:?} is not rd, production, operations, management \
         or external"
    )]
    Domain { index: u32, domain: String },
    #[error("value {index}: risk {risk:?} is not low, medium or high")]
    Risk { index: u32, risk: String },
    #[error("value {index}: binary data is not base64")]
    Base64 { index: u32 },
    #[error("value {index}: reference {identifier:?}: {reason}")]
    Reference {
        index: u32,
        identifier: String,
        reason: String,
    },
}

impl ValueJson {
    pub fn to_value(&self) -> Result<Value, DatasetError> {
        let index = self.index;
        let format = match &self.format {
            None => Format::String,
            Some(f) => Format::from_name(f).ok_or_else(|| DatasetError::Format {
                index,
                format: f.clone(),
            })?,
        };
        let data = match format {
            Format::Binary => base64::engine::general_purpose::STANDARD
                .decode(&self.data)
                .map_err(|_| DatasetError::Base64 { index })?,
            _ => self.data.as_bytes().to_vec(),
        };
        let mut permissions = match &self.permissions {
            None => Permissions::default(),
            Some(p) => Permissions::parse(p).ok_or_else(|| DatasetError::Permissions {
                index,
                perms: p.clone(),
            })?,
        };
        if let Some(c) = &self.classification {
            permissions.classify(Classification::from_name(c).ok_or_else(|| {
                DatasetError::Classification {
                    index,
                    classification: c.clone(),
                }
            })?);
        }
        let references = self
            .references
            .iter()
            .map(|r| {
                Identifier::parse(&r.identifier)
                    .map(|identifier| Reference {
                        identifier,
                        index: r.index,
                    })
                    .map_err(|e| DatasetError::Reference {
                        index,
                        identifier: r.identifier.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let domain = match &self.domain {
            None => None,
            Some(d) => Some(
                DataDomain::from_name(d).ok_or_else(|| DatasetError::Domain {
                    index,
                    domain: d.clone(),
                })?,
            ),
        };
        let risk = match &self.risk {
            None => None,
            Some(r) => Some(Risk::from_name(r).ok_or_else(|| DatasetError::Risk {
                index,
                risk: r.clone(),
            })?),
        };
        Ok(Value {
            domain,
            risk,
            index,
            value_type: self.value_type.clone(),
            format,
            data,
            ttl: self.ttl.filter(|t| *t > 0).unwrap_or(DEFAULT_TTL),
            timestamp: 0,
            permissions,
            references,
        })
    }

    pub fn from_value(v: &Value) -> ValueJson {
        let data = match v.format {
            Format::Binary => base64::engine::general_purpose::STANDARD.encode(&v.data),
            _ => String::from_utf8_lossy(&v.data).into_owned(),
        };
        ValueJson {
            index: v.index,
            value_type: v.value_type.clone(),
            data,
            format: Some(v.format.name().to_owned()),
            ttl: Some(v.ttl),
            permissions: Some(v.permissions.to_string()),
            classification: Some(v.permissions.classification().name().to_owned()),
            references: v
                .references
                .iter()
                .map(|r| ReferenceJson {
                    identifier: r.identifier.to_string(),
                    index: r.index,
                })
                .collect(),
            timestamp: (v.timestamp != 0).then_some(v.timestamp),
            domain: v.domain.map(|d| d.name().to_owned()),
            risk: v.risk.map(|r| r.name().to_owned()),
        }
    }
}

impl RecordJson {
    /// The record's values as a domain record (the identifier is parsed by the caller, with
    /// the limits that apply there).
    pub fn to_record(&self) -> Result<Record, DatasetError> {
        let values = self
            .values
            .iter()
            .map(ValueJson::to_value)
            .collect::<Result<_, _>>()?;
        Ok(Record::new(values))
    }

    pub fn from_record(identifier: &str, record: &[Value]) -> RecordJson {
        RecordJson {
            identifier: identifier.to_owned(),
            values: record.iter().map(ValueJson::from_value).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"{"identifier": "88.101.5/BAT-2025-000001",
            "values": [{"index": 1, "type": "URL", "data": "https://example.cn/p/1"},
                       {"index": 5, "type": "supplierContact", "data": "qa@example.cn", "permissions": "1100", "ttl": 60},
                       {"index": 7, "type": "blob", "data": "AAEC", "format": "binary"}]}"#;
        let r: RecordJson = serde_json::from_str(text).unwrap();
        let rec = r.to_record().unwrap();
        assert_eq!(rec.values.len(), 3);
        assert_eq!(rec.values[0].ttl, DEFAULT_TTL);
        assert!(!rec.values[1].permissions.public_read);
        assert_eq!(rec.values[1].ttl, 60);
        assert_eq!(rec.values[2].data, vec![0, 1, 2]);
        let back = RecordJson::from_record(&r.identifier, &rec.values);
        assert_eq!(back.to_record().unwrap(), rec);
    }

    #[test]
    fn rejects_bad_fields() {
        let v = |extra: &str| -> Result<Value, String> {
            let text = format!(r#"{{"index": 2, "type": "x", "data": "!!"{extra}}}"#);
            let j: ValueJson = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            j.to_value().map_err(|e| e.to_string())
        };
        assert!(v(r#", "format": "xml""#)
            .unwrap_err()
            .contains("unknown format"));
        assert!(v(r#", "permissions": "11""#)
            .unwrap_err()
            .contains("permissions"));
        assert!(v(r#", "format": "binary""#).unwrap_err().contains("base64"));
        assert!(v(r#", "colour": "red""#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(v("").is_ok());
    }
}
