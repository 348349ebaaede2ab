//! The headers `POST /v1/pcs/submit` reads before its body (`GET /v1/pcs/{pcs_id}` and the audit
//! routes read the tenant too). Each function takes the raw header value, `None` when absent.

/// Longest part of a refused `Content-Encoding` echoed back in the 415 body.
const MAX_ECHOED_ENCODING_CHARS: usize = 32;

/// The tenant named by `X-Tenant-Id` (`default` when absent). A value that is not UTF-8 becomes a
/// name no tenant has (its bad bytes turn into U+FFFD), so it gets the same 403 as any unknown
/// name.
pub fn tenant(value_opt: Option<&[u8]>) -> String {
    match value_opt {
        None => "default".to_owned(),
        Some(value) => String::from_utf8_lossy(value).into_owned(),
    }
}

/// The caller's `traceparent` when it is header text; whether it is a valid W3C value is for the
/// trace context helpers to decide (an invalid one starts a new trace, never refuses a request).
pub fn traceparent(value_opt: Option<&[u8]>) -> Option<&str> {
    value_opt.and_then(crate::header_text)
}

/// The body length `Content-Length` declares, when it is a decimal number that fits: a larger
/// declaration than the limit is refused (413) before anything is read.
pub fn declared_length(value_opt: Option<&[u8]>) -> Option<usize> {
    value_opt
        .and_then(crate::header_text)
        .and_then(|text| text.parse::<usize>().ok())
}

/// The encoding to refuse with 415 (cut to 32 characters for the answer), `None` when the body
/// may be taken: no `Content-Encoding`, or `identity` in any case and spacing. Bodies are logged
/// as sent, never inflated, so there is no decompression to cap.
pub fn unsupported_encoding(value_opt: Option<&[u8]>) -> Option<String> {
    let encoding = String::from_utf8_lossy(value_opt?);
    (!encoding.trim().eq_ignore_ascii_case("identity"))
        .then(|| encoding.chars().take(MAX_ECHOED_ENCODING_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_is_default_when_absent_and_lossy_otherwise() {
        assert_eq!(tenant(None), "default");
        assert_eq!(tenant(Some(b"acme")), "acme");
        assert_eq!(tenant(Some(b"")), "");
        assert_eq!(tenant(Some(b"Default")), "Default");
        assert_eq!(tenant(Some(b"def ault")), "def ault");
        // Not UTF-8 (Latin-1 `é`): a name no configured tenant has.
        assert_eq!(tenant(Some(b"caf\xe9")), "caf\u{fffd}");
        // UTF-8 that is not header text still names its tenant, as before.
        assert_eq!(tenant(Some("café".as_bytes())), "café");
    }

    #[test]
    fn traceparent_is_passed_on_as_text_only() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent(Some(valid.as_bytes())), Some(valid));
        assert_eq!(
            traceparent(Some(b"00-zzzz-not-a-trace-01")),
            Some("00-zzzz-not-a-trace-01"),
            "validity is the trace context's business"
        );
        assert_eq!(traceparent(Some(b"caf\xe9")), None);
        assert_eq!(traceparent(None), None);
    }

    #[test]
    fn declared_length_is_a_plain_decimal() {
        assert_eq!(declared_length(Some(b"65")), Some(65));
        assert_eq!(
            declared_length(Some(b"+65")),
            Some(65),
            "as str::parse reads it"
        );
        assert_eq!(declared_length(Some(b"0065")), Some(65));
        for unreadable in [
            &b""[..],
            b" 65",
            b"-1",
            b"6.5",
            b"99999999999999999999999",
            b"\xff",
        ] {
            assert_eq!(declared_length(Some(unreadable)), None, "{unreadable:?}");
        }
        assert_eq!(declared_length(None), None);
    }

    #[test]
    fn only_identity_or_no_encoding_is_taken() {
        assert_eq!(unsupported_encoding(None), None);
        for allowed in [&b"identity"[..], b"IDENTITY", b" Identity\t"] {
            assert_eq!(unsupported_encoding(Some(allowed)), None, "{allowed:?}");
        }
        assert_eq!(unsupported_encoding(Some(b"gzip")).as_deref(), Some("gzip"));
        assert_eq!(unsupported_encoding(Some(b"br")).as_deref(), Some("br"));
        assert_eq!(unsupported_encoding(Some(b"")).as_deref(), Some(""));
        assert_eq!(
            unsupported_encoding(Some(b"identity, gzip")).as_deref(),
            Some("identity, gzip")
        );
        assert_eq!(
            unsupported_encoding(Some(b" gzip\xff")).as_deref(),
            Some(" gzip\u{fffd}"),
            "echoed untrimmed, bad bytes replaced"
        );
        let long = "x".repeat(100);
        assert_eq!(
            unsupported_encoding(Some(long.as_bytes())),
            Some("x".repeat(32))
        );
    }
}
