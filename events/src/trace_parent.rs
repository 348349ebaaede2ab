//! The W3C `traceparent` value (Trace Context, level 1): what a request's header, a
//! `flk.submissions` record's header and a decision event's `traceparent_opt` carry.
//!
//! Here, in the pure core, because it parses untrusted text from every hop (an HTTP header, a
//! Kafka header anyone who can produce may write) and so is fuzzed
//! (`fuzz/fuzz_targets/http_request_head.rs`); `infra::tracing_context` re-exports it and keeps
//! the OpenTelemetry side.

use std::fmt;

/// A parsed W3C `traceparent` (version `00`; later versions are read by their first four fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id (never all zero).
    pub trace_id: [u8; 16],
    /// Span id of the caller (never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 = sampled.
    pub flags: u8,
}

impl TraceParent {
    /// Parses `version-traceid-parentid-flags` strictly (lowercase hex, ids not all zero);
    /// `None` for anything else, as the W3C spec asks of a receiver.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        // Version ff is invalid; 00 has exactly four fields; later versions may append fields.
        let length_ok = match version {
            0xff => false,
            0x00 => bytes.len() == 55,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
        if !length_ok || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (index, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[3 + 2 * index..5 + 2 * index])?;
        }
        let mut parent_id = [0u8; 8];
        for (index, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[36 + 2 * index..38 + 2 * index])?;
        }
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits (how OTLP JSON and collectors print it).
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The parent span id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex::encode(self.parent_id)
    }

    /// True when the caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    /// Always version `00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.parent_id_hex(),
            self.flags
        )
    }
}

/// One byte from two lowercase hex digits (the spec forbids uppercase).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |ch: u8| match ch {
        b'0'..=b'9' => Some(ch - b'0'),
        b'a'..=b'f' => Some(ch - b'a' + 10),
        _ => None,
    };
    match pair {
        [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_w3c_traceparent() {
        let parsed = TraceParent::parse(INCOMING).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id_hex(), "00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), INCOMING);
        assert_eq!(TraceParent::parse(&format!(" {INCOMING}\t")), Some(parsed));
        // A later version may append fields; it is read by the first four and written as 00.
        let future = format!("01{}-extra", &INCOMING[2..]);
        assert_eq!(TraceParent::parse(&future).unwrap(), parsed);
    }

    #[test]
    fn rejects_malformed_traceparents() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ];
        for text in bad {
            assert_eq!(TraceParent::parse(text), None, "{text:?}");
        }
    }
}
