//! The Basic Auth check of `/metrics`, `/debug/actors` and `/api/shards/*` (`[gateway]
//! metrics_basic_auth_opt`, `user:password`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Whether a request whose `Authorization` header is `authorization_opt` may pass: always when no
/// credentials are configured (`expected_opt` is `None`), otherwise only with `Basic ` and the
/// standard base64 of exactly `expected` (compared in constant time).
pub fn authorized(expected_opt: Option<&str>, authorization_opt: Option<&[u8]>) -> bool {
    let Some(expected) = expected_opt else {
        return true;
    };
    authorization_opt
        .and_then(crate::header_text)
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .is_some_and(|given| constant_time_equal(&given, expected.as_bytes()))
}

/// Compares credentials without stopping at the first difference, so the time taken does not tell
/// how much of a guess was right (the length is not hidden).
fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `user:pass` in standard base64.
    const USER_PASS: &[u8] = b"Basic dXNlcjpwYXNz";

    #[test]
    fn without_configured_credentials_everyone_passes() {
        assert!(authorized(None, None));
        assert!(authorized(None, Some(b"Basic garbage\xff")));
    }

    #[test]
    fn only_the_configured_credentials_pass() {
        let expected = Some("user:pass");
        assert!(authorized(expected, Some(USER_PASS)));
        let refused: [&[u8]; 9] = [
            b"",
            b"dXNlcjpwYXNz",
            b"basic dXNlcjpwYXNz",
            b"Basic  dXNlcjpwYXNz",
            b"Basic dXNlcjpwYXNz ",
            b"Basic dXNlcjpwYXN6",
            b"Basic dXNlcjpwYXNzeA==",
            b"Bearer dXNlcjpwYXNz",
            b"Basic dXNlcjpwYXNz\xff",
        ];
        for value in refused {
            assert!(!authorized(expected, Some(value)), "{value:?}");
        }
        assert!(!authorized(expected, None));
        // Unpadded base64 is not the standard engine's.
        assert!(!authorized(Some("user:pas"), Some(b"Basic dXNlcjpwYXM")));
        assert!(authorized(Some("user:pas"), Some(b"Basic dXNlcjpwYXM=")));
    }

    #[test]
    fn constant_time_equal_is_equality() {
        assert!(constant_time_equal(b"", b""));
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"ab"));
    }
}
