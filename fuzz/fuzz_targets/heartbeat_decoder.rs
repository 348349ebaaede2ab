//! Untrusted `<origin>.flk.heartbeats` records (anyone who can produce to the topic can write
//! one): decoding must never panic, and whatever decodes must read back the same once encoded.
#![no_main]

use events::heartbeat::Heartbeat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(heartbeat) = Heartbeat::decode(data) {
        assert_eq!(Heartbeat::decode(&heartbeat.encode()), Ok(heartbeat));
    }
});
