//! Query strings of the audit (`/v1/audit/*`) and cross-shard (`/api/shards/*`) routes.

use std::collections::HashMap;

/// The parameters of a query string (the part after `?`, without it), as actix's
/// `web::Query<HashMap<String, String>>` reads them: `application/x-www-form-urlencoded` (`+` is
/// a space, `%XX` a byte, bytes that are not UTF-8 become U+FFFD), empty pairs skipped, a name
/// without `=` has the empty value, and of a repeated name the last value wins. It never fails.
pub fn parameters(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The first of `names` that is not in `allowed` (which one is "first" depends on the iteration
/// order of `names`).
pub fn unknown_parameter<'a>(
    names: impl IntoIterator<Item = &'a String>,
    allowed: &[&str],
) -> Option<&'a String> {
    names
        .into_iter()
        .find(|name| !allowed.contains(&name.as_str()))
}

/// A tree size or leaf index: a decimal non-negative integer the store can hold (below 2^63,
/// since Postgres keeps it in a `BIGINT`).
pub fn count(text: &str) -> Option<u64> {
    text.parse::<u64>()
        .ok()
        .filter(|value| i64::try_from(*value).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = parameters(query).into_iter().collect();
        pairs.sort();
        pairs
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_decode_like_a_form() {
        assert!(parameters("").is_empty());
        assert!(parameters("&&").is_empty());
        assert_eq!(pairs("per_node=5"), owned(&[("per_node", "5")]));
        assert_eq!(
            pairs("tenant=a+b&pcs_id=x%2Fy%3D"),
            owned(&[("pcs_id", "x/y="), ("tenant", "a b")])
        );
        assert_eq!(pairs("flag"), owned(&[("flag", "")]));
        assert_eq!(pairs("a=1=2"), owned(&[("a", "1=2")]));
        assert_eq!(pairs("=v"), owned(&[("", "v")]));
        assert_eq!(pairs("a=1&a=2"), owned(&[("a", "2")]), "the last one wins");
        assert_eq!(
            pairs("a=%zz%4"),
            owned(&[("a", "%zz%4")]),
            "bad escapes kept"
        );
        assert_eq!(pairs("a=caf%E9"), owned(&[("a", "caf\u{fffd}")]));
        assert_eq!(pairs("a=caf%C3%A9"), owned(&[("a", "café")]));
    }

    #[test]
    fn unknown_parameters_are_named() {
        let names = ["per_node".to_owned(), "x".to_owned()];
        assert_eq!(unknown_parameter(&names, &["per_node"]), Some(&names[1]));
        assert_eq!(unknown_parameter(&names, &["x", "per_node"]), None);
        assert_eq!(unknown_parameter(&names[..1], &[]), Some(&names[0]));
        assert_eq!(unknown_parameter(&[], &[]), None);
    }

    #[test]
    fn counts_fit_a_bigint() {
        assert_eq!(count("0"), Some(0));
        assert_eq!(count("42"), Some(42));
        assert_eq!(count("+42"), Some(42));
        assert_eq!(count("9223372036854775807"), Some(i64::MAX as u64));
        for refused in ["", "-1", "9223372036854775808", "1e3", " 1", "0x10", "١"] {
            assert_eq!(count(refused), None, "{refused:?}");
        }
    }
}
