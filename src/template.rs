//! Industry metadata templates (元数据模板): which attributes a record of a kind carries.
//!
//! Pure domain logic: a [`Template`] and the check of a [`Record`] against it. A record opts
//! in with a `TEMPLATE_ID` value (IDIS convention: index 1000) naming the template's
//! identifier; its values whose `type` equals an attribute key are that attribute.

use serde::{Deserialize, Serialize};

use crate::identifier::Identifier;
use crate::record::{DataDomain, Record, Risk};

/// Most attributes one template may declare.
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest attribute key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// The type an attribute's value text must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Integer,
    Number,
    Boolean,
    /// `YYYY-MM-DD`, a real calendar date.
    Date,
    /// RFC 3339, e.g. `2025-03-01T08:00:00Z`.
    Datetime,
    /// An absolute `http://` or `https://` URL.
    Url,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Number => "number",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Datetime => "datetime",
            ValueType::Url => "url",
        }
    }

    pub fn from_name(s: &str) -> Option<ValueType> {
        [
            ValueType::String,
            ValueType::Integer,
            ValueType::Number,
            ValueType::Boolean,
            ValueType::Date,
            ValueType::Datetime,
            ValueType::Url,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }

    fn accepts(self, s: &str) -> bool {
        match self {
            ValueType::String => true,
            ValueType::Integer => s.parse::<i64>().is_ok(),
            ValueType::Number => {
                s.parse::<f64>().is_ok_and(f64::is_finite)
                    && s.bytes().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')
                    })
            }
            ValueType::Boolean => s == "true" || s == "false",
            ValueType::Date => is_date(s),
            ValueType::Datetime => is_datetime(s),
            ValueType::Url => {
                let rest = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"));
                rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(' '))
            }
        }
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[..4], 4), digits(&s[5..7], 2), digits(&s[8..], 2))
    else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn is_datetime(s: &str) -> bool {
    if s.len() < 20 || !s.is_char_boundary(10) || !is_date(&s[..10]) {
        return false;
    }
    let rest = &s[10..];
    if !(rest.starts_with('T') || rest.starts_with('t')) || rest.len() < 9 {
        return false;
    }
    let time = &rest[1..9];
    let t = time.as_bytes();
    if t[2] != b':' || t[5] != b':' {
        return false;
    }
    let (Some(h), Some(mi), Some(sec)) = (
        digits(&time[..2], 2),
        digits(&time[3..5], 2),
        digits(&time[6..8], 2),
    ) else {
        return false;
    };
    if h > 23 || mi > 59 || sec > 60 {
        return false;
    }
    let mut zone = &rest[9..];
    if let Some(frac) = zone.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        zone = &frac[n..];
    }
    match zone {
        "Z" | "z" => true,
        _ => {
            let z = zone.as_bytes();
            z.len() == 6
                && (z[0] == b'+' || z[0] == b'-')
                && z[3] == b':'
                && digits(&zone[1..3], 2).is_some_and(|h| h <= 23)
                && digits(&zone[4..6], 2).is_some_and(|m| m <= 59)
        }
    }
}

/// One attribute a template declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// The value `type` that carries this attribute, e.g. `partNumber`.
    pub key: String,
    /// Human-readable name, e.g. `零件号`.
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub required: bool,
    pub value_type: ValueType,
    /// Bounds on the value text's length in bytes, when given.
    #[serde(default)]
    pub min_len: Option<u32>,
    #[serde(default)]
    pub max_len: Option<u32>,
    /// The data domain of this attribute's values (`rd`, `production`, `operations`,
    /// `management`, `external`); a value may not name another.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "domain_name")]
    pub domain: Option<DataDomain>,
    /// The least risk level of this attribute's values (`low`, `medium`, `high`); a value
    /// may only be stricter, and its visibility must suit the stricter of the two.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "risk_name")]
    pub risk: Option<Risk>,
}

/// `Option<DataDomain>` as its name in JSON.
mod domain_name {
    use crate::record::DataDomain;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<DataDomain>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(d.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataDomain>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(name) => DataDomain::from_name(&name)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown data domain {name:?}"))),
        }
    }
}

/// `Option<Risk>` as its name in JSON.
mod risk_name {
    use crate::record::Risk;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Option<Risk>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) => s.serialize_str(r.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Risk>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(name) => Risk::from_name(&name)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown risk {name:?}"))),
        }
    }
}

/// An industry metadata template, itself identified like any registered object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Canonical identifier text (e.g. `88.101/TPL-AUTO-PARTS`).
    pub identifier: String,
    pub name: String,
    /// National industry classification (GB/T 4754), e.g. `C3670`.
    #[serde(default)]
    pub industry_code: String,
    #[serde(default = "one")]
    pub version: u32,
    pub attributes: Vec<Attribute>,
}

fn one() -> u32 {
    1
}

/// Why a template definition or a record checked against one is rejected. Always names
/// the attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template has no attributes")]
    NoAttributes,
    #[error("template has more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("template attribute key {0:?} is empty, too long or has control characters")]
    BadKey(String),
    #[error("template attribute {0:?} is declared twice")]
    DuplicateKey(String),
    #[error("template attribute {0:?} has min_len greater than max_len")]
    BadBounds(String),
    #[error("template name is empty or longer than 256 bytes")]
    BadName,
    #[error("attribute {key:?} is required by template {template} but missing")]
    Missing { key: String, template: String },
    #[error("attribute {key:?} must be of type {expected}, got {got:?}")]
    WrongType {
        key: String,
        expected: &'static str,
        got: String,
    },
    #[error("attribute {key:?} is {len} bytes, outside the bounds {min}..={max}")]
    Length {
        key: String,
        len: usize,
        min: u32,
        max: u32,
    },
    #[error("attribute {key:?} is not valid UTF-8")]
    NotText { key: String },
    #[error("attribute {key:?} appears {count} times")]
    Repeated { key: String, count: usize },
    #[error("attribute {key:?} is of data domain {expected}, the value says {got}")]
    Domain {
        key: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("attribute {key:?} is at least {least} risk, the value says {got}: a value may only be stricter than its template")]
    LooserRisk {
        key: String,
        least: &'static str,
        got: &'static str,
    },
    #[error(
        "attribute {key:?} is {risk} risk, which allows at most {loosest} visibility, but the \
         value is {asked} (rule: high risk → private, medium → partner, low → public)"
    )]
    TooVisible {
        key: String,
        risk: &'static str,
        loosest: &'static str,
        asked: &'static str,
    },
}

impl Template {
    /// Checks the definition itself.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.name.is_empty() || self.name.len() > 256 {
            return Err(TemplateError::BadName);
        }
        if self.attributes.is_empty() {
            return Err(TemplateError::NoAttributes);
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(TemplateError::TooManyAttributes);
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.attributes {
            if a.key.is_empty()
                || a.key.len() > MAX_KEY_BYTES
                || a.key.chars().any(char::is_control)
            {
                return Err(TemplateError::BadKey(a.key.clone()));
            }
            if !seen.insert(a.key.as_str()) {
                return Err(TemplateError::DuplicateKey(a.key.clone()));
            }
            if let (Some(min), Some(max)) = (a.min_len, a.max_len) {
                if min > max {
                    return Err(TemplateError::BadBounds(a.key.clone()));
                }
            }
        }
        Ok(())
    }

    /// Checks a record against this template: required attributes present (once), each
    /// attribute's text of the declared type and within its length bounds.
    pub fn check(&self, record: &Record) -> Result<(), TemplateError> {
        for a in &self.attributes {
            let mut matching = record.values.iter().filter(|v| v.value_type == a.key);
            let Some(value) = matching.next() else {
                if a.required {
                    return Err(TemplateError::Missing {
                        key: a.key.clone(),
                        template: self.identifier.clone(),
                    });
                }
                continue;
            };
            let extra = matching.count();
            if extra > 0 {
                return Err(TemplateError::Repeated {
                    key: a.key.clone(),
                    count: extra + 1,
                });
            }
            let Some(text) = value.data_str() else {
                return Err(TemplateError::NotText { key: a.key.clone() });
            };
            if !a.value_type.accepts(text) {
                return Err(TemplateError::WrongType {
                    key: a.key.clone(),
                    expected: a.value_type.name(),
                    got: text.chars().take(64).collect(),
                });
            }
            if let (Some(expected), Some(got)) = (a.domain, value.domain) {
                if expected != got {
                    return Err(TemplateError::Domain {
                        key: a.key.clone(),
                        expected: expected.name(),
                        got: got.name(),
                    });
                }
            }
            if let Some(least) = a.risk {
                if let Some(got) = value.risk.filter(|r| *r < least) {
                    return Err(TemplateError::LooserRisk {
                        key: a.key.clone(),
                        least: least.name(),
                        got: got.name(),
                    });
                }
                let asked = value.permissions.classification();
                if asked.strictness() < least.loosest().strictness() {
                    return Err(TemplateError::TooVisible {
                        key: a.key.clone(),
                        risk: least.name(),
                        loosest: least.loosest().name(),
                        asked: asked.name(),
                    });
                }
            }
            let (min, max) = (a.min_len.unwrap_or(0), a.max_len.unwrap_or(u32::MAX));
            if text.len() < min as usize || text.len() > max as usize {
                return Err(TemplateError::Length {
                    key: a.key.clone(),
                    len: text.len(),
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// The template's identifier, parsed.
    pub fn parsed_identifier(&self) -> Result<Identifier, crate::identifier::ParseError> {
        Identifier::parse(&self.identifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    fn template() -> Template {
        let attr = |key: &str, required, value_type, min_len, max_len| Attribute {
            key: key.into(),
            display_name: key.into(),
            required,
            value_type,
            min_len,
            max_len,
            domain: None,
            risk: None,
        };
        Template {
            identifier: "88.101/TPL-T".into(),
            name: "test".into(),
            industry_code: "C3670".into(),
            version: 1,
            attributes: vec![
                attr("partNumber", true, ValueType::String, Some(2), Some(8)),
                attr("productionDate", true, ValueType::Date, None, None),
                attr("weightKg", false, ValueType::Number, None, None),
                attr("quantity", false, ValueType::Integer, None, None),
                attr("ok", false, ValueType::Boolean, None, None),
                attr("at", false, ValueType::Datetime, None, None),
                attr("report", false, ValueType::Url, None, None),
            ],
        }
    }

    fn check(extra: &[(&str, &str)], expected: Result<(), &str>) {
        let mut values = vec![
            Value::text(1, "partNumber", "AB-12"),
            Value::text(2, "productionDate", "2024-02-29"),
        ];
        let mut next = 3;
        for (k, v) in extra {
            if let Some(existing) = values.iter_mut().find(|x| x.value_type == *k) {
                existing.data = v.as_bytes().to_vec();
            } else {
                values.push(Value::text(next, k, v));
                next += 1;
            }
        }
        let got = template().check(&Record::new(values));
        match expected {
            Ok(()) => assert_eq!(got, Ok(()), "{extra:?}"),
            Err(attr) => {
                let e = got.expect_err("should be rejected");
                assert!(e.to_string().contains(attr), "{e} should name {attr}");
            }
        }
    }

    #[test]
    fn a_value_may_only_be_stricter_than_its_attribute() {
        use crate::record::Classification::*;
        let mut t = template();
        t.attributes[0].domain = Some(DataDomain::Production);
        t.attributes[0].risk = Some(Risk::Medium);
        let json = serde_json::to_string(&t.attributes[0]).unwrap();
        assert!(json.contains(r#""domain":"production""#) && json.contains(r#""risk":"medium""#));
        let back: Attribute = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t.attributes[0]);
        // (value's domain, value's risk, visibility, the error's mark or accepted)
        for (domain, risk, visibility, expected) in [
            (None, None, Partner, None),
            (
                Some(DataDomain::Production),
                Some(Risk::High),
                Private,
                None,
            ),
            (None, None, Public, Some("at most partner")),
            (None, Some(Risk::Low), Partner, Some("only be stricter")),
            (
                Some(DataDomain::Rd),
                None,
                Private,
                Some("data domain production"),
            ),
        ] {
            let mut v = Value::text(1, "partNumber", "AB-12");
            v.permissions.classify(visibility);
            v.domain = domain;
            v.risk = risk;
            let record = Record::new(vec![v, Value::text(2, "productionDate", "2024-02-29")]);
            match (t.check(&record), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(mark)) => assert!(e.to_string().contains(mark), "{e}"),
                (got, _) => panic!("{domain:?} {risk:?} {visibility:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn check_table() {
        check(&[], Ok(()));
        check(&[("weightKg", "3.85"), ("quantity", "-4")], Ok(()));
        check(&[("ok", "true"), ("at", "2025-03-01T08:00:00Z")], Ok(()));
        check(&[("at", "2025-03-01T08:00:00.123+08:00")], Ok(()));
        check(&[("report", "https://example.cn/r/1")], Ok(()));
        check(&[("partNumber", "A")], Err("partNumber"));
        check(&[("partNumber", "ABCDEFGHI")], Err("partNumber"));
        check(&[("productionDate", "2023-02-29")], Err("productionDate"));
        check(&[("productionDate", "2024-13-01")], Err("productionDate"));
        check(&[("productionDate", "24-01-01")], Err("productionDate"));
        check(&[("weightKg", "heavy")], Err("weightKg"));
        check(&[("weightKg", "inf")], Err("weightKg"));
        check(&[("quantity", "1.5")], Err("quantity"));
        check(&[("ok", "yes")], Err("\"ok\""));
        check(&[("at", "2025-03-01 08:00:00Z")], Err("\"at\""));
        check(&[("at", "2025-03-01T25:00:00Z")], Err("\"at\""));
        check(&[("report", "ftp://x")], Err("report"));
        let missing = template().check(&Record::new(vec![Value::text(1, "partNumber", "AB")]));
        assert!(missing.unwrap_err().to_string().contains("productionDate"));
    }

    #[test]
    fn definition_rules() {
        let mut t = template();
        assert_eq!(t.validate(), Ok(()));
        t.attributes.push(t.attributes[0].clone());
        assert_eq!(
            t.validate(),
            Err(TemplateError::DuplicateKey("partNumber".into()))
        );
        let mut t = template();
        t.attributes[0].min_len = Some(9);
        assert_eq!(
            t.validate(),
            Err(TemplateError::BadBounds("partNumber".into()))
        );
        let mut t = template();
        t.attributes.clear();
        assert_eq!(t.validate(), Err(TemplateError::NoAttributes));
    }
}
