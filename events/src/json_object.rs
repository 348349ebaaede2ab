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

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        match serde_json::from_slice::<Value>(bytes) {
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
