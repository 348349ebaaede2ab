//! Untrusted config text (a file an operator edits or a template renders): loading it the way
//! `flk` loads a file must never panic, and whatever loads must be valid: it validates again and
//! every tenant has a decider policy. No environment overrides (`flk` passes `FLK_*` from its
//! environment; here the map is empty), so the file alone decides.
#![no_main]

use std::collections::HashMap;

use flk_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::load_from_text(text, &HashMap::new()) else {
        return;
    };
    config.validate().expect("a loaded config validates again");
    let policies = config
        .tenant_policies()
        .expect("a valid config has a policy for every tenant");
    assert_eq!(policies.len(), config.tenants.len());
    // Derived values and the redacting `Debug` must not panic either.
    let _ = format!("{config:?}");
    let _ = config.telemetry.traces_url_opt();
    let _ = config.audit.origin(&config.region);
    let _ = (
        config.gateway.decision_timeout(),
        config.gateway.body_timeout(),
    );
});
