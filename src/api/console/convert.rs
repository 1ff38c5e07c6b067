//! The console's JSON ⇄ domain types. Values travel in the record format of files
//! (`dataset::ValueJson`: `index`, `type`, `data`, `format`, `ttl`, `permissions`,
//! `classification`), so the console, `idnode register --file` and imports read one format.

use serde::{Deserialize, Serialize};

use crate::dataset::ValueJson;
use crate::error::{Error, Result};
use crate::record::{Record, Value};
use crate::template::Template;

/// A value as the console shows it: the file format, the template's display name for its
/// type (when the record follows a template that declares it), and its time in RFC 3339.
#[derive(Debug, Serialize)]
pub struct ValueOut {
    #[serde(flatten)]
    pub value: ValueJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

pub fn values_out(values: &[Value], template: Option<&Template>) -> Vec<ValueOut> {
    values
        .iter()
        .map(|v| ValueOut {
            value: ValueJson::from_value(v),
            display_name: template.and_then(|t| {
                t.attributes
                    .iter()
                    .find(|a| a.key == v.value_type && !a.display_name.is_empty())
                    .map(|a| a.display_name.clone())
            }),
            time: (v.timestamp != 0).then(|| crate::api::http::convert::iso8601(v.timestamp)),
        })
        .collect()
}

/// Values sent by the page, as a record.
pub fn record_in(values: &[ValueJson]) -> Result<Record> {
    let values = values
        .iter()
        .map(|v| {
            v.to_value()
                .map_err(|e| Error::invalid(format!("value {}: {e}", v.index)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Record::new(values))
}

/// `POST /console/api/record`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    pub identifier: String,
    pub values: Vec<ValueJson>,
}

/// `PUT /console/api/record?id=`: every value of the record, replacing the old ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuesIn {
    pub values: Vec<ValueJson>,
}

/// `POST /console/api/batch`: one chunk of an uploaded file, cut by the page at line
/// boundaries (CSV: between identifiers) below the body limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// `csv` or `jsonl`.
    pub format: String,
    /// The file's line number of the chunk's first line (from 1).
    pub first_line: usize,
    pub text: String,
}

/// One record's (or unreadable line's) outcome in a batch.
#[derive(Debug, Serialize)]
pub struct BatchRow {
    pub line: usize,
    pub identifier: String,
    /// `registered`, `already_present` or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantIn {
    /// A prefix (`88.101.5`) or an identifier (`88.101.5/X`).
    pub scope: String,
    pub grantee: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseIn {
    pub prefix: String,
    pub name: String,
    #[serde(default)]
    pub industry_code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    pub prefix: String,
    #[serde(default)]
    pub keep_previous: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaIn {
    pub prefix: String,
    #[serde(default)]
    pub max_registrations: Option<u64>,
    #[serde(default)]
    pub max_registrations_per_day: Option<u64>,
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
}
