//! Untrusted request heads: every parser the gateway runs on a request before its body
//! (`flk_http_head`: tenant, traceparent, content length and encoding, Basic Auth, query string,
//! and the W3C traceparent parser behind the trace context), then the body through decoding and
//! deciding like `pcs_decoder`. Nothing may panic, and the answers keep their promises: a parsed
//! traceparent prints back as the same lowercase text, only the exact credentials pass.
//!
//! Input layout: the first byte says which of the five fields are present (bit 0 tenant, 1
//! traceparent, 2 content encoding, 3 authorization, 4 content length); the rest splits on 0x00
//! (which no header value can hold) into those five fields, the query string, and the body.
#![no_main]

use events::trace_parent::TraceParent;
use events::{TenantPolicy, VerifyParams, decide};
use flk_http_head::{basic_auth, header_text, query, submit};
use libfuzzer_sys::fuzz_target;

/// The credentials the Basic Auth check expects, and the one header value that carries them
/// (standard base64 decoding is canonical: no other spelling decodes to the same bytes).
const EXPECTED: &str = "user:pass";
const EXPECTED_HEADER: &[u8] = b"Basic dXNlcjpwYXNz";

fuzz_target!(|data: &[u8]| {
    let Some((&present, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(7, |byte| *byte == 0);
    let mut header = |bit: u8| {
        let part = parts.next().unwrap_or_default();
        (present & (1 << bit) != 0).then_some(part)
    };
    let tenant_opt = header(0);
    let traceparent_opt = header(1);
    let encoding_opt = header(2);
    let authorization_opt = header(3);
    let length_opt = header(4);
    let query_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();

    let tenant = submit::tenant(tenant_opt);
    match tenant_opt.map(std::str::from_utf8) {
        None => assert_eq!(tenant, "default"),
        Some(Ok(text)) => assert_eq!(tenant, text),
        Some(Err(_)) => assert!(tenant.contains('\u{fffd}')),
    }

    if let Some(text) = submit::traceparent(traceparent_opt) {
        assert_eq!(Some(text.as_bytes()), traceparent_opt);
    }
    // Kafka headers reach the same parser as any UTF-8, so try it on more than header text.
    if let Some(Ok(text)) = traceparent_opt.map(std::str::from_utf8) {
        check_traceparent(text);
    }

    if let Some(length) = submit::declared_length(length_opt) {
        let text = length_opt.and_then(header_text).unwrap_or_default();
        let digits = text.strip_prefix('+').unwrap_or(text);
        assert!(!digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()));
        assert_eq!(digits.parse::<usize>(), Ok(length));
    }

    match submit::unsupported_encoding(encoding_opt) {
        Some(echoed) => assert!(echoed.chars().count() <= 32),
        None => assert!(encoding_opt.is_none_or(|value| {
            String::from_utf8_lossy(value)
                .to_ascii_lowercase()
                .contains("identity")
        })),
    }

    assert!(basic_auth::authorized(None, authorization_opt));
    assert_eq!(
        basic_auth::authorized(Some(EXPECTED), authorization_opt),
        authorization_opt == Some(EXPECTED_HEADER)
    );

    let parameters = query::parameters(&query_text);
    assert!(
        parameters.len()
            <= query_text
                .split('&')
                .filter(|pair| !pair.is_empty())
                .count()
    );
    let allowed = ["tenant", "pcs_id"];
    if let Some(unknown) = query::unknown_parameter(parameters.keys(), &allowed) {
        assert!(!allowed.contains(&unknown.as_str()));
    }
    for value in parameters.values() {
        if let Some(count) = query::count(value) {
            assert!(i64::try_from(count).is_ok());
        }
    }

    let policy = TenantPolicy {
        enabled: true,
        keys: Vec::new(),
        accept_legacy_prehash: false,
        params: VerifyParams::default(),
        params_version: 1,
    };
    let _ = decide(body, &tenant, Some(&policy));
});

/// A traceparent that parses prints as version `00` with the same lowercase ids and flags, and
/// parses again to the same value; a version `00` one prints back exactly as received.
fn check_traceparent(text: &str) {
    let Some(parsed) = TraceParent::parse(text) else {
        return;
    };
    let printed = parsed.to_string();
    let received = text.trim();
    assert_eq!(printed.len(), 55);
    assert!(!printed.bytes().any(|byte| byte.is_ascii_uppercase()));
    assert_eq!(printed[2..], received[2..55]);
    if received.starts_with("00") {
        assert_eq!(printed, received);
    }
    assert_eq!(TraceParent::parse(&printed), Some(parsed));
}
