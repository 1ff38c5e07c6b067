//! Handle.Net JSON ⇄ domain values, query strings, and the error mapping of the REST API.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value as Json};

use crate::error::{Error, ErrorKind, Reason};
use crate::identifier::Identifier;
use crate::record::{
    Classification, DataDomain, Format, Permissions, Reference, Risk, Value, DEFAULT_TTL,
};

/// Handle response codes used by this API.
pub mod code {
    pub const SUCCESS: i64 = 1;
    pub const ERROR: i64 = 2;
    pub const SERVER_BUSY: i64 = 3;
    /// IDIS: the request rate of a client or enterprise is over its limit.
    pub const RATE_LIMITED: i64 = 603;
    pub const PROTOCOL_ERROR: i64 = 4;
    pub const NOT_SUPPORTED: i64 = 5;
    pub const HANDLE_NOT_FOUND: i64 = 100;
    pub const HANDLE_ALREADY_EXISTS: i64 = 101;
    pub const INVALID_HANDLE: i64 = 102;
    pub const VALUES_NOT_FOUND: i64 = 200;
    pub const VALUE_ALREADY_EXISTS: i64 = 201;
    pub const INVALID_VALUE: i64 = 202;
    pub const INSUFFICIENT_PERMISSIONS: i64 = 401;
    pub const AUTHENTICATION_NEEDED: i64 = 402;
}

/// The one mapping from core errors to (HTTP status, Handle response code): every handler's
/// error goes through here (`Failure::from`).
pub fn failure(e: &Error) -> (StatusCode, i64) {
    match e.reason {
        Some(Reason::ValueNotFound) => (StatusCode::NOT_FOUND, code::VALUES_NOT_FOUND),
        Some(Reason::ValueExists) => (StatusCode::CONFLICT, code::VALUE_ALREADY_EXISTS),
        Some(Reason::Busy) => (StatusCode::SERVICE_UNAVAILABLE, code::SERVER_BUSY),
        // A limit's IDIS code (603, 604, 406) replaces the generic response code.
        Some(
            r @ (Reason::RequestLimit | Reason::RegistrationLimit | Reason::AuthenticationLimit),
        ) => (StatusCode::TOO_MANY_REQUESTS, i64::from(r.code())),
        None => match e.kind {
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, code::INVALID_VALUE),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, code::HANDLE_NOT_FOUND),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, code::HANDLE_ALREADY_EXISTS),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, code::INSUFFICIENT_PERMISSIONS),
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, code::AUTHENTICATION_NEEDED),
            // Without a reason, a size limit (values, record bytes): retrying cannot help,
            // unlike a quota or a rate.
            ErrorKind::ResourceExhausted => (StatusCode::PAYLOAD_TOO_LARGE, code::INVALID_VALUE),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, code::SERVER_BUSY),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, code::ERROR),
        },
    }
}

/// `key=value` pairs of a query string, percent-decoded (`+` is a space), in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Handle.Net booleans: true when present and empty, `true` or `yes`.
pub fn flag(pairs: &[(String, String)], name: &str) -> Option<bool> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| {
        v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
    })
}

pub fn all<'a>(pairs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Seconds since the epoch as `2022-05-04T06:45:34Z`.
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A value as the Handle.Net REST API shows it.
pub fn value_to_json(v: &Value) -> Json {
    let data = match v.format {
        Format::Binary => json!({
            "format": "base64",
            "value": base64::engine::general_purpose::STANDARD.encode(&v.data),
        }),
        Format::Json => match serde_json::from_slice::<Json>(&v.data) {
            Ok(value) => json!({ "format": structured_format(&v.value_type), "value": value }),
            Err(_) => json!({ "format": "string", "value": String::from_utf8_lossy(&v.data) }),
        },
        Format::String => {
            json!({ "format": "string", "value": String::from_utf8_lossy(&v.data) })
        }
    };
    let mut out = json!({
        "index": v.index,
        "type": v.value_type,
        "data": data,
        "ttl": v.ttl,
        "timestamp": iso8601(v.timestamp),
    });
    if v.permissions != Permissions::default() {
        out["permissions"] = json!(v.permissions.to_string());
        out["classification"] = json!(v.permissions.classification().name());
    }
    if let Some(d) = v.domain {
        out["domain"] = json!(d.name());
    }
    if let Some(r) = v.risk {
        out["risk"] = json!(r.name());
    }
    if !v.references.is_empty() {
        out["references"] = v
            .references
            .iter()
            .map(|r| json!({ "handle": r.identifier.to_string(), "index": r.index }))
            .collect();
    }
    out
}

/// Handle.Net's names of structured data formats, kept as JSON; `json` for any other.
const STRUCTURED_FORMATS: [&str; 5] = ["admin", "vlist", "site", "key", "json"];

/// The format a structured value is shown with, by its type.
fn structured_format(value_type: &str) -> &'static str {
    match value_type {
        "HS_ADMIN" => "admin",
        "HS_VLIST" => "vlist",
        "HS_SITE" | "HS_SITE.PREFIX" => "site",
        "HS_PUBKEY" => "key",
        _ => "json",
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

fn uint(v: &Json, what: &str) -> Result<u32, Error> {
    match v {
        Json::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(format!("{what} must be a non-negative integer")))
}

/// A value from Handle.Net JSON: `data` as `{format, value}` or a bare string; `index` as a
/// number or a string.
pub fn value_from_json(v: &Json) -> Result<Value, Error> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("a value must be a JSON object"))?;
    let index = uint(
        obj.get("index")
            .ok_or_else(|| bad("a value needs an index"))?,
        "index",
    )?;
    let value_type = obj
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("value {index}: type must be a string")))?
        .to_owned();
    let (format, data) = match obj.get("data") {
        None | Some(Json::Null) => (Format::String, Vec::new()),
        Some(Json::String(s)) => (Format::String, s.clone().into_bytes()),
        Some(Json::Object(d)) => {
            let fmt = d.get("format").and_then(Json::as_str).unwrap_or("string");
            let value = d.get("value").cloned().unwrap_or(Json::Null);
            match (fmt, value) {
                ("string", Json::String(s)) => (Format::String, s.into_bytes()),
                ("string", other) => (Format::String, other.to_string().into_bytes()),
                ("base64", Json::String(s)) => (
                    Format::Binary,
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .map_err(|_| bad(format!("value {index}: data is not base64")))?,
                ),
                ("hex", Json::String(s)) => (
                    Format::Binary,
                    hex::decode(s.trim())
                        .map_err(|_| bad(format!("value {index}: data is not hex")))?,
                ),
                ("base64" | "hex", _) => {
                    return Err(bad(format!("value {index}: {fmt} data must be a string")))
                }
                // admin, site, vlist, key, json: structured; kept as JSON.
                (f, other) if STRUCTURED_FORMATS.contains(&f) => {
                    (Format::Json, other.to_string().into_bytes())
                }
                (f, _) => {
                    return Err(bad(format!(
                        "value {index}: unknown data format {f:?} (string, base64, hex, admin, vlist, site, key or json)"
                    )))
                }
            }
        }
        Some(other) => (Format::Json, other.to_string().into_bytes()),
    };
    let ttl = match obj.get("ttl") {
        None | Some(Json::Null) => DEFAULT_TTL,
        Some(t) => uint(t, "ttl").unwrap_or(DEFAULT_TTL).max(1),
    };
    let mut permissions = match obj.get("permissions").and_then(Json::as_str) {
        None => Permissions::default(),
        Some(p) => Permissions::parse(p).ok_or_else(|| {
            bad(format!(
                "value {index}: permissions must be 4 characters of 0/1"
            ))
        })?,
    };
    // `classification` is a shorthand for permissions; explicit permissions win (values
    // are written with both, and must read back the same).
    let explicit = obj.get("permissions").is_some_and(|p| !p.is_null());
    if let Some(c) = obj
        .get("classification")
        .and_then(Json::as_str)
        .filter(|_| !explicit)
    {
        permissions.classify(Classification::from_name(c).ok_or_else(|| {
            bad(format!(
                "value {index}: classification must be public, partner or private"
            ))
        })?);
    }
    let references = match obj.get("references") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(refs)) => refs
            .iter()
            .map(|r| {
                let handle = r
                    .get("handle")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad(format!("value {index}: a reference needs a handle")))?;
                Ok(Reference {
                    identifier: Identifier::parse(handle)?,
                    index: uint(r.get("index").unwrap_or(&Json::Null), "reference index")?,
                })
            })
            .collect::<Result<_, Error>>()?,
        Some(_) => return Err(bad(format!("value {index}: references must be an array"))),
    };
    let name = |key: &str| match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(format!("value {index}: {key} must be a string"))),
    };
    let domain = match name("domain")? {
        None => None,
        Some(d) => Some(DataDomain::from_name(d).ok_or_else(|| {
            bad(format!(
                "value {index}: domain must be rd, production, operations, management or external"
            ))
        })?),
    };
    let risk = match name("risk")? {
        None => None,
        Some(r) => Some(
            Risk::from_name(r)
                .ok_or_else(|| bad(format!("value {index}: risk must be low, medium or high")))?,
        ),
    };
    Ok(Value {
        index,
        value_type,
        format,
        data,
        ttl,
        timestamp: 0,
        permissions,
        references,
        domain,
        risk,
    })
}

/// The values of a PUT body: `{"handle": ..., "values": [...]}`, a bare array, or one value.
/// Returns the values and the body's `handle`, if any.
pub fn body_values(body: &Json) -> Result<(Vec<Value>, Option<String>), Error> {
    let (list, handle) = match body {
        Json::Array(a) => (a.as_slice(), None),
        Json::Object(o) if o.contains_key("values") => (
            o["values"]
                .as_array()
                .map(Vec::as_slice)
                .ok_or_else(|| bad("values must be an array"))?,
            o.get("handle").and_then(Json::as_str).map(str::to_owned),
        ),
        Json::Object(_) => (std::slice::from_ref(body), None),
        _ => return Err(bad("the body must be a JSON object or array")),
    };
    let values = list.iter().map(value_from_json).collect::<Result<_, _>>()?;
    Ok((values, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::admission::Refusal;

    #[test]
    fn every_error_and_refusal_has_its_status() {
        let kinds = [
            (ErrorKind::InvalidArgument, 400, 202),
            (ErrorKind::NotFound, 404, 100),
            (ErrorKind::AlreadyExists, 409, 101),
            (ErrorKind::PermissionDenied, 403, 401),
            (ErrorKind::Unauthenticated, 401, 402),
            (ErrorKind::ResourceExhausted, 413, 202),
            (ErrorKind::Unavailable, 503, 3),
            (ErrorKind::Internal, 500, 2),
        ];
        assert_eq!(kinds.len(), ErrorKind::ALL.len());
        for (kind, http, handle) in kinds {
            let e = Error::new(kind, "x");
            assert_eq!(
                failure(&e),
                (StatusCode::from_u16(http).unwrap(), handle),
                "{kind:?}"
            );
        }
        let reasons = [
            (Error::value_not_found("x"), 404, 200),
            (Error::value_exists("x"), 409, 201),
            (Error::limit(Reason::RequestLimit, "x"), 429, 603),
            (Error::limit(Reason::RegistrationLimit, "x"), 429, 604),
            (Error::limit(Reason::AuthenticationLimit, "x"), 429, 406),
        ];
        for (e, http, handle) in reasons {
            assert_eq!(
                failure(&e),
                (StatusCode::from_u16(http).unwrap(), handle),
                "{e:?}"
            );
        }
        // Admission refusals, as the middleware maps them (through `failure`).
        for (r, http, handle) in [(Refusal::Rate, 429, 603), (Refusal::Busy, 503, 3)] {
            assert_eq!(
                failure(&r.error()),
                (StatusCode::from_u16(http).unwrap(), handle),
                "{r:?}"
            );
        }
    }

    /// Found by the `handle_json` fuzz target: an unknown format name was kept as JSON and
    /// came back as a string value.
    #[test]
    fn formats_round_trip_and_unknown_ones_are_refused() {
        let unknown =
            json!({"index": 4, "type": "blob", "data": {"format": "baqe64", "value": "AAEC"}});
        assert!(value_from_json(&unknown).is_err());
        for body in [
            json!({"index": 1, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88", "index": 200}}}),
            json!({"index": 2, "type": "HS_VLIST", "data": {"format": "vlist", "value": [{"handle": "88.101/a", "index": 1}]}}),
            json!({"index": 3, "type": "spec", "data": {"format": "json", "value": {"mm": [1, 2]}}}),
            // Also found by the fuzzer: floats must parse exactly (serde_json float_roundtrip).
            json!({"index": 6, "type": "HS_X", "data": {"format": "json", "value": {"x": 2.3333333333333333e67}}}),
            json!({"index": 4, "type": "blob", "data": {"format": "hex", "value": "00ff"}}),
            json!({"index": 5, "type": "URL", "data": "https://a.example"}),
            // Also found: permissions that no classification names came back changed.
            json!({"index": 7, "type": "EMAIL", "permissions": "0000"}),
        ] {
            let v = value_from_json(&body).unwrap();
            let back = value_from_json(&value_to_json(&v)).unwrap();
            assert!(back.same_content(&v), "{body}: {v:?} came back as {back:?}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_651_646_734), "2022-05-04T06:45:34Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn handle_value_shapes() {
        let bare: Json =
            serde_json::from_str(r#"{"index":"1","type":"URL","data":"https://e.cn"}"#).unwrap();
        let v = value_from_json(&bare).unwrap();
        assert_eq!(
            (v.index, v.format, v.data.as_slice()),
            (1, Format::String, b"https://e.cn".as_slice())
        );
        let admin: Json = serde_json::from_str(
            r#"{"index":"100","type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"88.101.5/ADMIN","index":"200","permissions":"011111110011"}}}"#,
        )
        .unwrap();
        let v = value_from_json(&admin).unwrap();
        assert_eq!((v.index, v.format), (100, Format::Json));
        let back = value_to_json(&v);
        assert_eq!(back["data"]["format"], "admin");
        assert_eq!(back["data"]["value"]["handle"], "88.101.5/ADMIN");
        let b64: Json = serde_json::from_str(
            r#"{"index":5,"type":"K","data":{"format":"base64","value":"AAEC"}}"#,
        )
        .unwrap();
        assert_eq!(value_from_json(&b64).unwrap().data, vec![0, 1, 2]);
        for bad in [
            r#"{"type":"URL","data":"x"}"#,
            r#"{"index":-1,"type":"URL"}"#,
            r#"{"index":1,"type":5}"#,
            r#"{"index":1,"type":"K","data":{"format":"base64","value":"!!"}}"#,
            r#"{"index":1,"type":"K","data":"x","permissions":"11"}"#,
            r#"[1]"#,
        ] {
            let j: Json = serde_json::from_str(bad).unwrap();
            assert!(value_from_json(&j).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_and_queries() {
        let body: Json = serde_json::from_str(
            r#"{"handle":"88.101.5/x","values":[{"index":1,"type":"URL","data":"u"}]}"#,
        )
        .unwrap();
        let (values, handle) = body_values(&body).unwrap();
        assert_eq!((values.len(), handle.as_deref()), (1, Some("88.101.5/x")));
        let one: Json = serde_json::from_str(r#"{"index":2,"type":"EMAIL","data":"a@b"}"#).unwrap();
        assert_eq!(body_values(&one).unwrap().0.len(), 1);
        let q = query_pairs(Some(
            "index=1&index=2&type=URL&publicOnly&overwrite=false&x=a%2Fb+c",
        ));
        assert_eq!(all(&q, "index").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(flag(&q, "publicOnly"), Some(true));
        assert_eq!(flag(&q, "overwrite"), Some(false));
        assert_eq!(flag(&q, "pretty"), None);
        assert_eq!(all(&q, "x").next(), Some("a/b c"));
    }
}
