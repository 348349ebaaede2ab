//! Postgres `text` and `jsonb` refuse the NUL character, and a decision event may carry one (a
//! `pcs_id` or an error message quoting a key comes from the submitted body). A projector must not
//! wedge on such an event, so NUL becomes U+FFFD before anything is stored or hashed.

use serde_json::Value;

/// `text` with every NUL replaced by U+FFFD; moved as is when it has none (the common case costs
/// no copy).
pub(crate) fn pg_string(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// `value` with NUL replaced in every string and key. Rewritten in place: only an object with a
/// NUL in a key is rebuilt (as before, a key that becomes equal to another keeps the value that
/// sorts last).
pub(crate) fn pg_json(mut value: Value) -> Value {
    sanitize_in_place(&mut value);
    value
}

fn sanitize_in_place(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => *text = text.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(sanitize_in_place),
        Value::Object(map) => {
            if map.keys().any(|key| key.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(key, item)| (pg_string(key), item))
                    .collect();
            }
            map.values_mut().for_each(sanitize_in_place);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_everywhere() {
        assert_eq!(pg_string("a\0b".into()), "a\u{FFFD}b");
        assert_eq!(
            pg_json(json!({"k\0": ["x\0", 1], "n": {"m\0": "v\0"}})),
            json!({"k\u{FFFD}": ["x\u{FFFD}", 1], "n": {"m\u{FFFD}": "v\u{FFFD}"}})
        );
        // Two keys that become one: the one that sorts last wins, as the store has always done.
        assert_eq!(
            pg_json(json!({"k\u{FFFD}": 1, "k\0": 2})),
            json!({"k\u{FFFD}": 1})
        );
    }
}
