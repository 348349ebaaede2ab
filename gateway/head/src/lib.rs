//! How the gateway reads the untrusted parts of a request before its body: the tenant, trace,
//! length and encoding headers of a submission ([`submit`]), the Basic Auth of the operational
//! routes ([`basic_auth`]), and query strings and the counts in them ([`query`]).
//!
//! Its own crate, over plain bytes and text instead of actix's `HttpRequest`, so the fuzz target
//! `fuzz/fuzz_targets/http_request_head.rs` can run every parser without building actix or tokio
//! under a sanitizer. The gateway's handlers are thin adapters that hand these functions the raw
//! header values (`None` when the header is absent) and map their answers to statuses.
//!
//! Invariant: nothing here panics or allocates without bound on any input; a value that does not
//! parse is an answer (`None`, a refusal), never an error to propagate.

pub mod basic_auth;
pub mod query;
pub mod submit;

/// A header value as text when every byte is visible ASCII or a tab, `None` otherwise: exactly the
/// rule of `http::HeaderValue::to_str`, which the handlers applied before these parsers existed.
pub fn header_text(value: &[u8]) -> Option<&str> {
    let visible = |byte: &u8| (32..127).contains(byte) || *byte == b'\t';
    if value.iter().all(visible) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_takes_visible_ascii_and_tabs_only() {
        assert_eq!(header_text(b""), Some(""));
        assert_eq!(header_text(b"gzip, br"), Some("gzip, br"));
        assert_eq!(header_text(b"a\tb ~"), Some("a\tb ~"));
        for refused in [
            &b"caf\xc3\xa9"[..],
            b"caf\xe9",
            b"a\x7fb",
            b"a\x1fb",
            b"\r\n",
        ] {
            assert_eq!(header_text(refused), None, "{refused:?}");
        }
    }
}
