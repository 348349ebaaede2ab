//! Deterministic JSON text for hashing values that are stored as `jsonb`.
//!
//! `jsonb` reorders keys and rewrites numbers (`1e15` comes back as `1000000000000000`, `-0.0` as
//! `0.0`), so the bytes hashed at insert time must be a function of the *value*, not of the text:
//! - objects: keys sorted by their UTF-8 bytes, no whitespace;
//! - strings: serde_json's escaping;
//! - numbers: by their f64 value: an integral value below 2^53 in magnitude is printed as an integer
//!   (`5.0` -> `5`, `-0.0` -> `0`); an integer beyond that range is first converted to f64; every
//!   other value is printed as the shortest text that reads back to the same f64.
//!
//! The same value read back from `jsonb` therefore gives the same bytes.

use serde_json::{Number, Value};

/// 2^53: above this, not every integer is an f64.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The canonical text of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    // Serializing a &str cannot fail; fall back to a lossless debug form just in case.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str(&format!("{text:?}")),
    }
}

fn write_number(number: &Number, out: &mut String) {
    if let Some(integer) = number.as_i64() {
        if (integer as f64).abs() < EXACT_INTEGER_LIMIT {
            out.push_str(&integer.to_string());
            return;
        }
    }
    let Some(float) = number.as_f64() else {
        out.push_str(&number.to_string());
        return;
    };
    if float.fract() == 0.0 && float.abs() < EXACT_INTEGER_LIMIT {
        // Exact: the value is an integer below 2^53.
        out.push_str(&(float as i64).to_string());
        return;
    }
    match Number::from_f64(float) {
        Some(shortest) => out.push_str(&shortest.to_string()),
        None => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_numbers_normalized() {
        let value =
            json!({"b": 1.0, "a": [-0.0, 1e15, 0.1, 1e300, "x\"y"], "c": {"z": null, "y": true}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":[0,1000000000000000,0.1,1e+300,"x\"y"],"b":1,"c":{"y":true,"z":null}}"#
        );
    }

    #[test]
    fn jsonb_style_rewrites_give_the_same_bytes() {
        // What Postgres prints back for the values above.
        let original = json!({"d": 1e15, "e": -0.0, "f": 1.152_921_504_606_847e18, "g": 5.0});
        let from_jsonb: Value = serde_json::from_str(
            r#"{"d": 1000000000000000, "e": 0.0, "f": 1152921504606847000, "g": 5.0}"#,
        )
        .unwrap();
        assert_eq!(canonical_json(&original), canonical_json(&from_jsonb));
    }
}
