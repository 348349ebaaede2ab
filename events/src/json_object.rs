//! A PCS body as a JSON object with typed accessors that name the offending key, and the decode
//! error they report. Shared by the record decoder ([`crate::pcs`]) and the signed fields
//! ([`crate::canonical`]), so neither depends on the other for it.

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a body is not a PCS. Every variant names the offending key where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes are not JSON (or not UTF-8, or a number beyond the f64 range).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON but not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// A required key is absent.
    #[error("`{key}` is required")]
    MissingKey { key: String },
    /// A key holds the wrong JSON type.
    #[error("`{key}` must be {expected}")]
    WrongType { key: String, expected: &'static str },
    /// A key holds the right type but an unusable value (an integer out of range, a bad timestamp).
    #[error("`{key}` {problem}")]
    BadValue { key: String, problem: String },
}

impl DecodeError {
    /// The JSON key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            DecodeError::NotJson(_) | DecodeError::NotAnObject => None,
            DecodeError::MissingKey { key }
            | DecodeError::WrongType { key, .. }
            | DecodeError::BadValue { key, .. } => Some(key),
        }
    }

    pub(crate) fn wrong_type(key: &str, expected: &'static str) -> Self {
        DecodeError::WrongType {
            key: key.to_owned(),
            expected,
        }
    }
}

/// A JSON value read with every object's keys checked for repeats, at any depth.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds a [`Value`] like serde_json's own, refusing a repeated key.
struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let StrictValue(value) = entries.next_value()?;
            if map.contains_key(&key) {
                // The key is the caller's text: shown escaped and cut short.
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    shown.escape_debug()
                )));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// A parsed JSON object with typed, key-naming accessors.
#[derive(Debug)]
pub(crate) struct JsonObject {
    map: Map<String, Value>,
    /// Prepended to key names in errors (`ft.` for the nested block).
    prefix: &'static str,
}

impl JsonObject {
    /// A nested object whose keys are named `<prefix><key>` in errors.
    pub(crate) fn nested(map: Map<String, Value>, prefix: &'static str) -> Self {
        JsonObject { map, prefix }
    }

    /// Parses a body. An object that repeats a key is not JSON we accept: serde_json (like
    /// Python's and Go's decoders) would silently keep the last value, and a signed body whose
    /// fields two readers may see differently is an invitation to smuggle one past the other.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        match serde_json::from_slice::<StrictValue>(bytes).map(|strict| strict.0) {
            Ok(Value::Object(map)) => Ok(JsonObject { map, prefix: "" }),
            Ok(_) => Err(DecodeError::NotAnObject),
            Err(error) => Err(DecodeError::NotJson(error.to_string())),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value under `key`, treating `null` as absent.
    pub(crate) fn optional(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub(crate) fn required(&self, key: &str) -> Result<&Value, DecodeError> {
        match self.map.get(key) {
            None => Err(DecodeError::MissingKey {
                key: self.name(key),
            }),
            Some(value) => Ok(value),
        }
    }

    pub(crate) fn required_string(&self, key: &str) -> Result<String, DecodeError> {
        self.required(key)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DecodeError::wrong_type(&self.name(key), "a string"))
    }

    pub(crate) fn optional_string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        self.optional(key)
            .map(|value| {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| DecodeError::wrong_type(&self.name(key), "a string"))
            })
            .transpose()
    }

    pub(crate) fn required_i64(&self, key: &str) -> Result<i64, DecodeError> {
        integer(&self.name(key), self.required(key)?)
    }

    pub(crate) fn optional_i64(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        self.optional(key)
            .map(|value| integer(&self.name(key), value))
            .transpose()
    }

    pub(crate) fn required_f64(&self, key: &str) -> Result<f64, DecodeError> {
        self.required(key)?
            .as_f64()
            .ok_or_else(|| DecodeError::wrong_type(&self.name(key), "a number"))
    }

    pub(crate) fn optional_f64(&self, key: &str) -> Result<Option<f64>, DecodeError> {
        self.optional(key)
            .map(|value| {
                value
                    .as_f64()
                    .ok_or_else(|| DecodeError::wrong_type(&self.name(key), "a number"))
            })
            .transpose()
    }
}

/// A JSON integer that fits `i64`; a JSON float such as `1.0` is a type error.
pub(crate) fn integer(key: &str, value: &Value) -> Result<i64, DecodeError> {
    match value {
        Value::Number(number) if number.is_i64() => number
            .as_i64()
            .ok_or_else(|| DecodeError::wrong_type(key, "an integer")),
        Value::Number(number) if number.is_u64() => Err(DecodeError::BadValue {
            key: key.to_owned(),
            problem: "is out of range for a 64-bit signed integer".to_owned(),
        }),
        _ => Err(DecodeError::wrong_type(key, "an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<JsonObject, DecodeError> {
        JsonObject::parse(body.as_bytes())
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for body in [
            r#"{"pcs_id":"a","pcs_id":"b"}"#,
            r#"{"N_j":{"2":1,"2":3}}"#,
            r#"{"ft":{"degraded":false,"degraded":true}}"#,
            r#"{"v_star":[{"x":1,"x":1}]}"#,
        ] {
            match parsed(body) {
                Err(DecodeError::NotJson(message)) => {
                    assert!(message.contains("duplicate key"), "{body}: {message}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let long = format!(r#"{{"{0}":1,"{0}":2}}"#, "k".repeat(10_000));
        match parsed(&long) {
            Err(DecodeError::NotJson(message)) => assert!(message.len() < 200, "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let body =
            r#"{"a":[1,-2,3.5,1e300,true,null,"s\u00e9"],"b":{"c":{}},"n":18446744073709551615}"#;
        let strict = parsed(body).map(|object| object.map).ok();
        let plain = match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        assert!(strict.is_some());
        assert_eq!(strict, plain);
        assert!(matches!(parsed("[1]"), Err(DecodeError::NotAnObject)));
        assert!(matches!(
            parsed(r#"{"a":1e400}"#),
            Err(DecodeError::NotJson(_))
        ));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parsed(&deep), Err(DecodeError::NotJson(_))));
    }
}
