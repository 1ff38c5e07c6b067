//! The Handle REST API's JSON body parser on arbitrary bytes: never panics; the values it
//! accepts survive validation, the store codec and the JSON writer unchanged.
#![no_main]

use idnode::api::http::convert::{body_values, value_from_json, value_to_json};
use idnode::record::{Record, RecordLimits};
use idnode::store::codec::{decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok((values, _handle)) = body_values(&json) else {
        return;
    };
    for v in &values {
        let back = value_from_json(&value_to_json(v)).expect("written JSON parses");
        assert!(back.same_content(v), "{v:?} came back as {back:?}");
    }
    let mut record = Record::new(values);
    if record.validate(&RecordLimits::default()).is_ok() {
        let decoded = decode_record(&encode_record(&record)).expect("codec round trip");
        assert_eq!(decoded, record);
    }
});
