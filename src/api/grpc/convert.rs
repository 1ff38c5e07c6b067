//! Conversions between protobuf messages and domain types, and the gRPC error mapping.

use tonic::{Code, Status};

use super::pb;
use crate::auth::{Enterprise, Quota};
use crate::error::{Error, ErrorKind};
use crate::identifier::Identifier;
use crate::oplog::LogEntry;
use crate::record::{
    Classification, DataDomain, Format, Permissions, Record, Reference, Risk, Value, DEFAULT_TTL,
};
use crate::template::{Attribute, Template, ValueType};
use crate::toplevel::{Endpoints, InterfaceCount};

/// The one mapping from protocol-neutral errors to gRPC codes.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Metadata key carrying the machine-readable reason of a refusal (e.g. `604`).
pub const REASON_HEADER: &str = "x-idnode-reason";

pub fn status(e: Error) -> Status {
    let mut s = Status::new(code(e.kind), e.message);
    if let Some(r) = e.reason {
        s.metadata_mut().insert(
            REASON_HEADER,
            tonic::metadata::MetadataValue::from(r.code() as u32),
        );
    }
    s
}

fn format_from(f: i32) -> Result<Format, Error> {
    match pb::Format::try_from(f) {
        Ok(pb::Format::Unspecified | pb::Format::String) => Ok(Format::String),
        Ok(pb::Format::Json) => Ok(Format::Json),
        Ok(pb::Format::Binary) => Ok(Format::Binary),
        Err(_) => Err(Error::invalid(format!("unknown value format {f}"))),
    }
}

fn format_to(f: Format) -> pb::Format {
    match f {
        Format::String => pb::Format::String,
        Format::Json => pb::Format::Json,
        Format::Binary => pb::Format::Binary,
    }
}

pub fn value_from(v: pb::Value) -> Result<Value, Error> {
    let mut permissions = match v.permissions {
        None => Permissions::default(),
        Some(p) => Permissions {
            admin_read: p.admin_read,
            admin_write: p.admin_write,
            public_read: p.public_read,
            public_write: p.public_write,
            partner_read: false,
        },
    };
    match pb::Classification::try_from(v.classification) {
        Ok(pb::Classification::Unspecified) => {}
        Ok(pb::Classification::Public) => permissions.classify(Classification::Public),
        Ok(pb::Classification::Partner) => permissions.classify(Classification::Partner),
        Ok(pb::Classification::Private) => permissions.classify(Classification::Private),
        Err(_) => {
            return Err(Error::invalid(format!(
                "value {}: unknown classification {}",
                v.index, v.classification
            )))
        }
    }
    let references = v
        .references
        .into_iter()
        .map(|r| {
            Identifier::parse(&r.identifier)
                .map(|identifier| Reference {
                    identifier,
                    index: r.index,
                })
                .map_err(|e| {
                    Error::invalid(format!(
                        "value {}: reference {:?}: {e}",
                        v.index, r.identifier
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Value {
        domain: domain_from(v.domain, v.index)?,
        risk: risk_from(v.risk, v.index)?,
        index: v.index,
        value_type: v.r#type,
        format: format_from(v.format)?,
        data: v.data,
        ttl: if v.ttl == 0 { DEFAULT_TTL } else { v.ttl },
        timestamp: 0,
        permissions,
        references,
    })
}

fn domain_from(d: i32, index: u32) -> Result<Option<DataDomain>, Error> {
    match pb::DataDomain::try_from(d) {
        Ok(pb::DataDomain::Unspecified) => Ok(None),
        Ok(pb::DataDomain::Rd) => Ok(Some(DataDomain::Rd)),
        Ok(pb::DataDomain::Production) => Ok(Some(DataDomain::Production)),
        Ok(pb::DataDomain::Operations) => Ok(Some(DataDomain::Operations)),
        Ok(pb::DataDomain::Management) => Ok(Some(DataDomain::Management)),
        Ok(pb::DataDomain::External) => Ok(Some(DataDomain::External)),
        Err(_) => Err(Error::invalid(format!(
            "value {index}: unknown data domain {d}"
        ))),
    }
}

fn domain_to(d: Option<DataDomain>) -> pb::DataDomain {
    match d {
        None => pb::DataDomain::Unspecified,
        Some(DataDomain::Rd) => pb::DataDomain::Rd,
        Some(DataDomain::Production) => pb::DataDomain::Production,
        Some(DataDomain::Operations) => pb::DataDomain::Operations,
        Some(DataDomain::Management) => pb::DataDomain::Management,
        Some(DataDomain::External) => pb::DataDomain::External,
    }
}

fn risk_from(r: i32, index: u32) -> Result<Option<Risk>, Error> {
    match pb::Risk::try_from(r) {
        Ok(pb::Risk::Unspecified) => Ok(None),
        Ok(pb::Risk::Low) => Ok(Some(Risk::Low)),
        Ok(pb::Risk::Medium) => Ok(Some(Risk::Medium)),
        Ok(pb::Risk::High) => Ok(Some(Risk::High)),
        Err(_) => Err(Error::invalid(format!("value {index}: unknown risk {r}"))),
    }
}

fn risk_to(r: Option<Risk>) -> pb::Risk {
    match r {
        None => pb::Risk::Unspecified,
        Some(Risk::Low) => pb::Risk::Low,
        Some(Risk::Medium) => pb::Risk::Medium,
        Some(Risk::High) => pb::Risk::High,
    }
}

pub fn values_from(values: Vec<pb::Value>) -> Result<Vec<Value>, Error> {
    values.into_iter().map(value_from).collect()
}

pub fn value_to(v: Value) -> pb::Value {
    pb::Value {
        domain: domain_to(v.domain) as i32,
        risk: risk_to(v.risk) as i32,
        index: v.index,
        r#type: v.value_type,
        data: v.data,
        format: format_to(v.format) as i32,
        ttl: v.ttl,
        timestamp: v.timestamp,
        permissions: Some(pb::Permissions {
            admin_read: v.permissions.admin_read,
            admin_write: v.permissions.admin_write,
            public_read: v.permissions.public_read,
            public_write: v.permissions.public_write,
        }),
        classification: match v.permissions.classification() {
            Classification::Public => pb::Classification::Public,
            Classification::Partner => pb::Classification::Partner,
            Classification::Private => pb::Classification::Private,
        } as i32,
        references: v
            .references
            .into_iter()
            .map(|r| pb::Reference {
                identifier: r.identifier.to_string(),
                index: r.index,
            })
            .collect(),
    }
}

pub fn record_to(identifier: &Identifier, record: Record) -> pb::Record {
    pb::Record {
        identifier: identifier.to_string(),
        values: record.values.into_iter().map(value_to).collect(),
    }
}

fn value_type_from(t: i32, key: &str) -> Result<ValueType, Error> {
    match pb::AttributeType::try_from(t) {
        Ok(pb::AttributeType::String) => Ok(ValueType::String),
        Ok(pb::AttributeType::Integer) => Ok(ValueType::Integer),
        Ok(pb::AttributeType::Number) => Ok(ValueType::Number),
        Ok(pb::AttributeType::Boolean) => Ok(ValueType::Boolean),
        Ok(pb::AttributeType::Date) => Ok(ValueType::Date),
        Ok(pb::AttributeType::Datetime) => Ok(ValueType::Datetime),
        Ok(pb::AttributeType::Url) => Ok(ValueType::Url),
        Ok(pb::AttributeType::Unspecified) | Err(_) => Err(Error::invalid(format!(
            "attribute {key:?}: type must be set (string, integer, number, boolean, date, datetime, url)"
        ))),
    }
}

fn value_type_to(t: ValueType) -> pb::AttributeType {
    match t {
        ValueType::String => pb::AttributeType::String,
        ValueType::Integer => pb::AttributeType::Integer,
        ValueType::Number => pb::AttributeType::Number,
        ValueType::Boolean => pb::AttributeType::Boolean,
        ValueType::Date => pb::AttributeType::Date,
        ValueType::Datetime => pb::AttributeType::Datetime,
        ValueType::Url => pb::AttributeType::Url,
    }
}

pub fn template_from(t: pb::Template) -> Result<Template, Error> {
    let attributes = t
        .attributes
        .into_iter()
        .map(|a| {
            Ok(Attribute {
                domain: domain_from(a.domain, 0)?,
                risk: risk_from(a.risk, 0)?,
                value_type: value_type_from(a.r#type, &a.key)?,
                key: a.key,
                display_name: a.display_name,
                required: a.required,
                min_len: (a.min_len > 0).then_some(a.min_len),
                max_len: (a.max_len > 0).then_some(a.max_len),
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Template {
        identifier: t.identifier,
        name: t.name,
        industry_code: t.industry_code,
        version: t.version.max(1),
        attributes,
    })
}

pub fn template_to(t: &Template) -> pb::Template {
    pb::Template {
        identifier: t.identifier.clone(),
        name: t.name.clone(),
        industry_code: t.industry_code.clone(),
        version: t.version,
        attributes: t
            .attributes
            .iter()
            .map(|a| pb::Attribute {
                key: a.key.clone(),
                display_name: a.display_name.clone(),
                required: a.required,
                r#type: value_type_to(a.value_type) as i32,
                min_len: a.min_len.unwrap_or(0),
                max_len: a.max_len.unwrap_or(0),
                domain: domain_to(a.domain) as i32,
                risk: risk_to(a.risk) as i32,
            })
            .collect(),
    }
}

pub fn quota_from(q: pb::Quota) -> Quota {
    Quota {
        max_registrations: (q.max_registrations > 0).then_some(q.max_registrations),
        max_registrations_per_day: (q.max_registrations_per_day > 0)
            .then_some(q.max_registrations_per_day),
        max_requests_per_second: (q.max_requests_per_second > 0)
            .then_some(q.max_requests_per_second),
    }
}

pub fn quota_to(q: &Quota) -> pb::Quota {
    pb::Quota {
        max_registrations: q.max_registrations.unwrap_or(0),
        max_registrations_per_day: q.max_registrations_per_day.unwrap_or(0),
        max_requests_per_second: q.max_requests_per_second.unwrap_or(0),
    }
}

pub fn log_entry_to(e: LogEntry) -> pb::LogEntry {
    pb::LogEntry {
        seq: e.seq,
        at: e.at,
        op: e.op,
        actor: e.actor,
        target: e.target,
        detail: e.detail.unwrap_or_default(),
        content: e.content.unwrap_or_default(),
        prev: e.prev,
        hash: e.hash,
    }
}

pub fn enterprise_to(e: &Enterprise, registered: i64) -> pb::Enterprise {
    pb::Enterprise {
        prefix: e.prefix.clone(),
        name: e.name.clone(),
        industry_code: e.industry_code.clone(),
        created_at: e.created_at,
        registered,
        active_tokens: e.credential_ids.len() as u32,
    }
}

pub fn backup_to(r: crate::resolver::BackupReport) -> pb::BackupResponse {
    pb::BackupResponse {
        stores: r
            .stores
            .into_iter()
            .map(|(store, b)| pb::StoreBackup {
                store,
                backup_id: b.id,
                timestamp: b.timestamp,
                size_bytes: b.size_bytes,
                files: b.files,
                new_files: b.new_files,
            })
            .collect(),
        files: r.files,
    }
}

pub fn endpoints_to(e: &Endpoints) -> pb::Endpoints {
    pb::Endpoints {
        grpc: e.grpc.clone(),
        dns: e.dns.clone(),
        http: e.http.clone(),
    }
}

pub fn prefix_totals_to(prefixes: &[(String, i64)]) -> Vec<pb::PrefixTotal> {
    prefixes
        .iter()
        .map(|(prefix, registered)| pb::PrefixTotal {
            prefix: prefix.clone(),
            registered: *registered,
        })
        .collect()
}

pub fn interface_count_to(c: &InterfaceCount) -> pb::InterfaceCount {
    pb::InterfaceCount {
        interface: c.interface.clone(),
        local: c.local,
        forwarded: c.forwarded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_code() {
        let table = [
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::Unauthenticated, Code::Unauthenticated),
            (ErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        assert_eq!(table.len(), ErrorKind::ALL.len());
        for (kind, expected) in table {
            assert_eq!(code(kind), expected, "{kind:?}");
        }
        // Admission refusals, as the gRPC admission layer maps them (through `status`).
        use crate::api::admission::Refusal;
        for (r, reason) in [(Refusal::Rate, "603"), (Refusal::Busy, "3")] {
            let s = status(r.error());
            assert_eq!(s.code(), Code::ResourceExhausted, "{r:?}");
            let got = s.metadata().get(REASON_HEADER).map(|v| v.to_str().unwrap());
            assert_eq!(got, Some(reason), "{r:?}");
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let s = status(Error::internal("disk /dev/sda1 on fire"));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("sda1"));
    }

    #[test]
    fn value_defaults() {
        let v = value_from(pb::Value {
            index: 1,
            r#type: "URL".into(),
            data: b"x".to_vec(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v.ttl, DEFAULT_TTL);
        assert_eq!(v.format, Format::String);
        assert_eq!(v.permissions, Permissions::default());
        assert!(value_from(pb::Value {
            format: 42,
            ..Default::default()
        })
        .is_err());
    }
}
