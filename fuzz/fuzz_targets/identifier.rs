//! Identifier and prefix parsing on arbitrary text: never panics, and whatever parses is
//! normalised (parsing its own text gives it back, and its parts rebuild it).
#![no_main]

use idnode::identifier::{Identifier, Limits, Prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    if let Ok(id) = Identifier::parse_with(text, &limits) {
        let again = Identifier::parse_with(id.as_str(), &limits).expect("normal form parses");
        assert_eq!(again, id);
        assert!(id.as_str().len() <= limits.max_identifier_bytes);
        let prefix = id.prefix();
        assert_eq!(prefix.as_str(), id.prefix_str());
        let rebuilt = Identifier::new(&prefix, id.suffix(), &limits).expect("parts rebuild");
        assert_eq!(rebuilt, id);
    }
    if let Ok(p) = Prefix::parse_with(text, &limits) {
        assert_eq!(Prefix::parse_with(p.as_str(), &limits).as_ref(), Ok(&p));
        if let Some(parent) = p.parent() {
            assert!(p.is_within(&parent));
        }
    }
});
