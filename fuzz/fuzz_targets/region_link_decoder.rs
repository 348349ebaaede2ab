//! Untrusted records of the links between regions: `<origin>.flk.heartbeats` and
//! `<origin>.flk.checkpoints` (anyone who can produce to those topics can write one). Decoding
//! must never panic, and whatever decodes must read back the same once encoded.
#![no_main]

use events::heartbeat::Heartbeat;
use events::replication_checkpoint::ReplicationCheckpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(heartbeat) = Heartbeat::decode(data) {
        assert_eq!(Heartbeat::decode(&heartbeat.encode()), Ok(heartbeat));
    }
    if let Ok(checkpoint) = ReplicationCheckpoint::decode(data) {
        assert_eq!(ReplicationCheckpoint::decode(&checkpoint.encode()), Ok(checkpoint));
    }
});
