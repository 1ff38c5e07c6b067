//! Records: the Handle value model (RFC 3651), one record per identifier.
//!
//! Owns the domain types and their limits. Knows nothing of protobuf, JSON or RocksDB: the
//! adapters convert into these types, and `store::codec` owns the on-disk form.

use std::collections::HashSet;
use std::fmt;

use crate::identifier::Identifier;

/// Default TTL of a value, in seconds (Handle convention).
pub const DEFAULT_TTL: u32 = 86_400;
/// The value type that links a record to its metadata template (IDIS convention, index 1000).
pub const TEMPLATE_TYPE: &str = "TEMPLATE_ID";

/// Per-value and per-record limits (DESIGN.md defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    pub max_type_bytes: usize,
    pub max_data_bytes: usize,
    pub max_values: usize,
    pub max_record_bytes: usize,
    pub max_references: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_type_bytes: 128,
            max_data_bytes: 64 * 1024,
            max_values: 1024,
            max_record_bytes: 1024 * 1024,
            max_references: 64,
        }
    }
}

/// How a value's bytes are meant to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// UTF-8 text.
    String,
    /// A UTF-8 JSON document.
    Json,
    /// Opaque bytes (shown as hex or base64 by clients).
    Binary,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::String => "string",
            Format::Json => "json",
            Format::Binary => "binary",
        }
    }

    pub fn from_name(s: &str) -> Option<Format> {
        match s {
            "string" => Some(Format::String),
            "json" => Some(Format::Json),
            "binary" | "hex" | "base64" => Some(Format::Binary),
            _ => None,
        }
    }
}

/// How sensitive a value is (the seed plan's data classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    /// Anyone may read it (`public_read`).
    Public,
    /// The owner and the enterprises it granted read access to.
    Partner,
    /// The owner only.
    Private,
}

impl Classification {
    pub fn name(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Partner => "partner",
            Classification::Private => "private",
        }
    }

    pub fn from_name(s: &str) -> Option<Classification> {
        match s {
            "public" => Some(Classification::Public),
            "partner" => Some(Classification::Partner),
            "private" => Some(Classification::Private),
            _ => None,
        }
    }
}

/// The data domain of a value (the source plan's taxonomy of industrial data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataDomain {
    /// 研发: research and development.
    Rd,
    /// 生产: production.
    Production,
    /// 运维: operations and maintenance.
    Operations,
    /// 管理: management.
    Management,
    /// 外部: external.
    External,
}

impl DataDomain {
    pub const ALL: [DataDomain; 5] = [
        DataDomain::Rd,
        DataDomain::Production,
        DataDomain::Operations,
        DataDomain::Management,
        DataDomain::External,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataDomain::Rd => "rd",
            DataDomain::Production => "production",
            DataDomain::Operations => "operations",
            DataDomain::Management => "management",
            DataDomain::External => "external",
        }
    }

    pub fn from_name(s: &str) -> Option<DataDomain> {
        DataDomain::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// The risk level of a value (高/中/低). It decides the loosest visibility the value may
/// have ([`Risk::loosest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub const ALL: [Risk; 3] = [Risk::Low, Risk::Medium, Risk::High];

    pub fn name(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    pub fn from_name(s: &str) -> Option<Risk> {
        Risk::ALL.into_iter().find(|r| r.name() == s)
    }

    /// The loosest visibility a value of this risk may have: high → private (the owner
    /// only), medium → partner (the owner and granted enterprises), low → public.
    pub fn loosest(self) -> Classification {
        match self {
            Risk::High => Classification::Private,
            Risk::Medium => Classification::Partner,
            Risk::Low => Classification::Public,
        }
    }
}

impl Classification {
    /// How strict the visibility is: public 0, partner 1, private 2.
    pub fn strictness(self) -> u8 {
        match self {
            Classification::Public => 0,
            Classification::Partner => 1,
            Classification::Private => 2,
        }
    }
}

/// Who may read and write a value (Handle permission bits, plus partner reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    pub admin_read: bool,
    pub admin_write: bool,
    pub public_read: bool,
    pub public_write: bool,
    /// Enterprises granted partner access may read it (not a Handle bit).
    pub partner_read: bool,
}

impl Default for Permissions {
    /// `1110`: the owner reads and writes, everyone reads.
    fn default() -> Self {
        Permissions {
            admin_read: true,
            admin_write: true,
            public_read: true,
            public_write: false,
            partner_read: false,
        }
    }
}

impl Permissions {
    /// Parses the 4-character form `admin_read admin_write public_read public_write`, e.g. `1110`.
    pub fn parse(s: &str) -> Option<Permissions> {
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(|c| *c == b'0' || *c == b'1') {
            return None;
        }
        Some(Permissions {
            admin_read: b[0] == b'1',
            admin_write: b[1] == b'1',
            public_read: b[2] == b'1',
            public_write: b[3] == b'1',
            partner_read: false,
        })
    }

    pub fn bits(self) -> u8 {
        (self.partner_read as u8) << 4
            | (self.admin_read as u8) << 3
            | (self.admin_write as u8) << 2
            | (self.public_read as u8) << 1
            | self.public_write as u8
    }

    pub fn from_bits(bits: u8) -> Permissions {
        Permissions {
            admin_read: bits & 8 != 0,
            admin_write: bits & 4 != 0,
            public_read: bits & 2 != 0,
            public_write: bits & 1 != 0,
            partner_read: bits & 16 != 0,
        }
    }

    pub fn classification(self) -> Classification {
        if self.public_read {
            Classification::Public
        } else if self.partner_read {
            Classification::Partner
        } else {
            Classification::Private
        }
    }

    /// Sets the read bits for a classification (the owner keeps reading).
    pub fn classify(&mut self, c: Classification) {
        self.public_read = c == Classification::Public;
        self.partner_read = c == Classification::Partner;
        self.admin_read = true;
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |b: bool| if b { '1' } else { '0' };
        write!(
            f,
            "{}{}{}{}",
            bit(self.admin_read),
            bit(self.admin_write),
            bit(self.public_read),
            bit(self.public_write)
        )
    }
}

/// A pointer to one value of another (or the same) identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub identifier: Identifier,
    pub index: u32,
}

/// One typed value of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// Unique within the record, ≥ 1.
    pub index: u32,
    /// `URL`, `EMAIL`, `HS_ADMIN`, an industry attribute key, ...
    pub value_type: String,
    pub format: Format,
    pub data: Vec<u8>,
    /// Seconds a resolver may cache this value.
    pub ttl: u32,
    /// Seconds since the Unix epoch when the value was last written (set by the node).
    pub timestamp: i64,
    pub permissions: Permissions,
    pub references: Vec<Reference>,
    /// The data domain; `None`: not classified (records written before domains existed).
    pub domain: Option<DataDomain>,
    /// The risk level; `None`: not classified (no visibility constraint).
    pub risk: Option<Risk>,
}

impl Value {
    /// A public string value with the default TTL.
    pub fn text(index: u32, value_type: &str, data: &str) -> Value {
        Value {
            index,
            value_type: value_type.to_owned(),
            format: Format::String,
            data: data.as_bytes().to_vec(),
            ttl: DEFAULT_TTL,
            timestamp: 0,
            permissions: Permissions::default(),
            references: Vec::new(),
            domain: None,
            risk: None,
        }
    }

    /// The data as text, when it is UTF-8.
    pub fn data_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// Equal in everything a client chooses (the timestamp is the node's).
    pub fn same_content(&self, other: &Value) -> bool {
        self.index == other.index
            && self.value_type == other.value_type
            && self.format == other.format
            && self.data == other.data
            && self.ttl == other.ttl
            && self.permissions == other.permissions
            && self.references == other.references
            && self.domain == other.domain
            && self.risk == other.risk
    }

    fn approx_bytes(&self) -> usize {
        32 + self.value_type.len()
            + self.data.len()
            + self
                .references
                .iter()
                .map(|r| r.identifier.as_str().len() + 8)
                .sum::<usize>()
    }
}

/// The values of one identifier, kept sorted by index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub values: Vec<Value>,
}

/// Why a record breaks the value model or its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a record needs at least one value")]
    Empty,
    #[error("record has {count} values, more than the limit of {max}")]
    TooManyValues { count: usize, max: usize },
    #[error("record is about {bytes} bytes, more than the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("value index 0 is reserved")]
    ZeroIndex,
    #[error("value index {0} appears more than once")]
    DuplicateIndex(u32),
    #[error("value {index}: type is empty")]
    EmptyType { index: u32 },
    #[error("value {index}: type is {len} bytes, more than the limit of {max}")]
    TypeTooLong { index: u32, len: usize, max: usize },
    #[error("value {index}: type contains a control character")]
    TypeControlChar { index: u32 },
    #[error("value {index}: data is {len} bytes, more than the limit of {max}")]
    DataTooLong { index: u32, len: usize, max: usize },
    #[error("value {index}: data is not valid UTF-8 but its format is {format}")]
    NotUtf8 { index: u32, format: &'static str },
    #[error("value {index}: data is not valid JSON: {reason}")]
    BadJson { index: u32, reason: String },
    #[error(
        "value {index}: risk {risk} allows at most {loosest} visibility, but it is {asked} \
         (rule: high risk → private, medium → partner, low → public)"
    )]
    TooVisible {
        index: u32,
        risk: &'static str,
        loosest: &'static str,
        asked: &'static str,
    },
    #[error("value {index}: {count} references, more than the limit of {max}")]
    TooManyReferences {
        index: u32,
        count: usize,
        max: usize,
    },
}

impl Record {
    /// The (data domain, risk level) pairs of its classified values, each once: the cells
    /// of the operator's registrations by domain × risk this record counts in.
    pub fn classes(&self) -> std::collections::BTreeSet<(DataDomain, Risk)> {
        self.values
            .iter()
            .filter_map(|v| Some((v.domain?, v.risk?)))
            .collect()
    }

    pub fn new(mut values: Vec<Value>) -> Record {
        values.sort_by_key(|v| v.index);
        Record { values }
    }

    pub fn value(&self, index: u32) -> Option<&Value> {
        self.values
            .binary_search_by_key(&index, |v| v.index)
            .ok()
            .map(|i| &self.values[i])
    }

    /// The template identifier this record claims to follow, if any (as text; the caller parses).
    pub fn template_ref(&self) -> Option<&str> {
        self.values
            .iter()
            .find(|v| v.value_type == TEMPLATE_TYPE)
            .and_then(|v| v.data_str())
    }

    /// Equal in everything a client chooses: a retried create of this content is a no-op.
    pub fn same_content(&self, other: &Record) -> bool {
        self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| a.same_content(b))
    }

    /// Checks the value model and the limits; sorts values by index.
    pub fn validate(&mut self, limits: &RecordLimits) -> Result<(), RecordError> {
        if self.values.is_empty() {
            return Err(RecordError::Empty);
        }
        if self.values.len() > limits.max_values {
            return Err(RecordError::TooManyValues {
                count: self.values.len(),
                max: limits.max_values,
            });
        }
        self.values.sort_by_key(|v| v.index);
        let mut seen = HashSet::with_capacity(self.values.len());
        let mut bytes = 0usize;
        for v in &self.values {
            let index = v.index;
            if index == 0 {
                return Err(RecordError::ZeroIndex);
            }
            if !seen.insert(index) {
                return Err(RecordError::DuplicateIndex(index));
            }
            if v.value_type.is_empty() {
                return Err(RecordError::EmptyType { index });
            }
            if v.value_type.len() > limits.max_type_bytes {
                return Err(RecordError::TypeTooLong {
                    index,
                    len: v.value_type.len(),
                    max: limits.max_type_bytes,
                });
            }
            if v.value_type.chars().any(char::is_control) {
                return Err(RecordError::TypeControlChar { index });
            }
            if v.data.len() > limits.max_data_bytes {
                return Err(RecordError::DataTooLong {
                    index,
                    len: v.data.len(),
                    max: limits.max_data_bytes,
                });
            }
            match v.format {
                Format::String => {
                    if std::str::from_utf8(&v.data).is_err() {
                        return Err(RecordError::NotUtf8 {
                            index,
                            format: "string",
                        });
                    }
                }
                Format::Json => {
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&v.data) {
                        return Err(RecordError::BadJson {
                            index,
                            reason: e.to_string(),
                        });
                    }
                }
                Format::Binary => {}
            }
            if let Some(risk) = v.risk {
                let asked = v.permissions.classification();
                if asked.strictness() < risk.loosest().strictness() {
                    return Err(RecordError::TooVisible {
                        index,
                        risk: risk.name(),
                        loosest: risk.loosest().name(),
                        asked: asked.name(),
                    });
                }
            }
            if v.references.len() > limits.max_references {
                return Err(RecordError::TooManyReferences {
                    index,
                    count: v.references.len(),
                    max: limits.max_references,
                });
            }
            bytes += v.approx_bytes();
        }
        if bytes > limits.max_record_bytes {
            return Err(RecordError::TooLarge {
                bytes,
                max: limits.max_record_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: Vec<Value>, expected: Result<(), RecordError>) {
        let mut r = Record { values };
        assert_eq!(r.validate(&RecordLimits::default()), expected);
    }

    #[test]
    fn validation_table() {
        use RecordError::*;
        let ok = |i| Value::text(i, "URL", "https://example.cn");
        check(vec![ok(1), ok(2)], Ok(()));
        check(vec![], Err(Empty));
        check(vec![ok(0)], Err(ZeroIndex));
        check(vec![ok(2), ok(1), ok(2)], Err(DuplicateIndex(2)));
        check(vec![Value::text(1, "", "x")], Err(EmptyType { index: 1 }));
        check(
            vec![Value::text(1, &"t".repeat(129), "x")],
            Err(TypeTooLong {
                index: 1,
                len: 129,
                max: 128,
            }),
        );
        check(
            vec![Value::text(3, "a\tb", "x")],
            Err(TypeControlChar { index: 3 }),
        );
        let mut big = ok(1);
        big.data = vec![b'a'; 64 * 1024 + 1];
        check(
            vec![big],
            Err(DataTooLong {
                index: 1,
                len: 65537,
                max: 65536,
            }),
        );
        let mut bad_utf8 = ok(1);
        bad_utf8.data = vec![0xff, 0xfe];
        check(
            vec![bad_utf8.clone()],
            Err(NotUtf8 {
                index: 1,
                format: "string",
            }),
        );
        bad_utf8.format = Format::Binary;
        check(vec![bad_utf8], Ok(()));

        let mut json = ok(1);
        json.format = Format::Json;
        json.data = b"{\"a\":1}".to_vec();
        check(vec![json.clone()], Ok(()));
        json.data = b"{\"a\":".to_vec();
        assert!(matches!(
            Record { values: vec![json] }.validate(&RecordLimits::default()),
            Err(BadJson { index: 1, .. })
        ));
        let many: Vec<Value> = (1..=1025).map(ok).collect();
        check(
            many,
            Err(TooManyValues {
                count: 1025,
                max: 1024,
            }),
        );
        let huge: Vec<Value> = (1..=20)
            .map(|i| {
                let mut v = ok(i);
                v.data = vec![b'a'; 60_000];
                v
            })
            .collect();
        assert!(matches!(
            Record { values: huge }.validate(&RecordLimits::default()),
            Err(TooLarge { .. })
        ));
    }

    #[test]
    fn permissions_round_trip() {
        for s in ["1110", "1100", "0000", "1111", "0010"] {
            let p = Permissions::parse(s).unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(Permissions::from_bits(p.bits()), p);
        }
        let mut p = Permissions::default();
        assert_eq!(p.classification(), Classification::Public);
        p.classify(Classification::Partner);
        assert_eq!(
            (p.classification(), p.to_string()),
            (Classification::Partner, "1100".into())
        );
        assert_eq!(Permissions::from_bits(p.bits()), p);
        p.classify(Classification::Private);
        assert_eq!(p.classification(), Classification::Private);
        for bad in ["", "111", "11100", "11a0"] {
            assert_eq!(Permissions::parse(bad), None);
        }
        assert_eq!(Permissions::default().to_string(), "1110");
    }

    #[test]
    fn same_content_ignores_timestamps() {
        let a = Record::new(vec![Value::text(1, "URL", "x")]);
        let mut b = a.clone();
        b.values[0].timestamp = 99;
        assert!(a.same_content(&b));
        b.values[0].ttl = 5;
        assert!(!a.same_content(&b));
    }

    #[test]
    fn risk_decides_the_loosest_visibility() {
        // (risk, visibility, accepted)
        use Classification::*;
        for (risk, visibility, accepted) in [
            (Some(Risk::High), Private, true),
            (Some(Risk::High), Partner, false),
            (Some(Risk::High), Public, false),
            (Some(Risk::Medium), Private, true),
            (Some(Risk::Medium), Partner, true),
            (Some(Risk::Medium), Public, false),
            (Some(Risk::Low), Public, true),
            (Some(Risk::Low), Private, true),
            (None, Public, true),
        ] {
            let mut v = Value::text(1, "note", "x");
            v.permissions.classify(visibility);
            v.risk = risk;
            v.domain = Some(DataDomain::Production);
            let got = Record { values: vec![v] }.validate(&RecordLimits::default());
            assert_eq!(got.is_ok(), accepted, "{risk:?} {visibility:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("high risk → private"), "{e}");
            }
        }
        for d in DataDomain::ALL {
            assert_eq!(DataDomain::from_name(d.name()), Some(d));
        }
        for r in Risk::ALL {
            assert_eq!(Risk::from_name(r.name()), Some(r));
        }
    }
}
