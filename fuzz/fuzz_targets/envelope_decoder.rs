//! Untrusted `flk.decisions` records: decoding must never panic, and whatever decodes must survive
//! an encode/decode round trip unchanged (compared as bytes, since a NaN never equals itself).
#![no_main]

use events::DecisionEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = DecisionEvent::decode(data) {
        let encoded = event.encode().expect("a decoded event encodes");
        let again = DecisionEvent::decode(&encoded).expect("an encoded event decodes");
        assert_eq!(again.encode().expect("encodes again"), encoded);
    }
});
