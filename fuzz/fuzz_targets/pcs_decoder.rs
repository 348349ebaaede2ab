//! Untrusted request bodies: decoding, deciding and canonicalizing must never panic, and whatever
//! decodes must canonicalize to printable ASCII that decodes again to the same payload.
#![no_main]

use events::{Pcs, SignedFields, TenantPolicy, VerifyParams, decide};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = TenantPolicy {
        enabled: true,
        keys: Vec::new(),
        accept_legacy_prehash: false,
        params: VerifyParams::default(),
        params_version: 1,
    };
    let _ = decide(data, "fuzz", Some(&policy));
    if let Ok(pcs) = Pcs::from_json_bytes(data) {
        let payload = pcs.signed_fields().canonical_payload();
        assert!(payload.iter().all(|byte| (0x20..0x7f).contains(byte)));
        let again = SignedFields::from_json_bytes(&payload).expect("canonical payload decodes");
        assert_eq!(again.canonical_payload(), payload);
    }
});
