//! The on-disk record decoder on arbitrary bytes: never panics, and what decodes
//! re-encodes to a record that decodes to the same thing.
#![no_main]

use idnode::store::codec::{decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data) {
        let bytes = encode_record(&record);
        let again = decode_record(&bytes).expect("an encoded record decodes");
        assert_eq!(again, record);
    }
});
