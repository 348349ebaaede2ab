//! Postgres `text` and `jsonb` refuse the NUL character, and a decision event may carry one (a
//! `pcs_id` or an error message quoting a key comes from the submitted body). A projector must not
//! wedge on such an event, so NUL becomes U+FFFD before anything is stored or hashed.

use std::borrow::Cow;

use serde_json::Value;

/// `text` with every NUL replaced by U+FFFD.
pub(crate) fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` with NUL replaced in every string and key.
pub(crate) fn pg_json(value: Value) -> Value {
    match value {
        Value::String(text) if text.contains('\0') => Value::String(text.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(pg_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| (pg_text(&key).into_owned(), pg_json(item)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_everywhere() {
        assert_eq!(pg_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(pg_text("plain"), Cow::Borrowed("plain")));
        assert_eq!(
            pg_json(json!({"k\0": ["x\0", 1]})),
            json!({"k\u{FFFD}": ["x\u{FFFD}", 1]})
        );
    }
}
