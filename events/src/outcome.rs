//! The class of a decision: what the core decided about one submission, as a closed set with stable
//! string codes.
//!
//! The core speaks outcomes, never HTTP: the gateway alone maps a class to a status
//! (`gateway/src/http/status.rs`). The codes are stored (dedup rows, audit entries, the hot cache)
//! and sent in error bodies, so they never change; a new class is a new code.

use serde::{Deserialize, Serialize};

/// What the decider concluded about one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeClass {
    /// Verified, accepted and not escalated.
    Accepted,
    /// Verified and accepted, but a human should look at it.
    Escalated,
    /// Verified and not accepted (always escalated by the verifier).
    Rejected,
    /// The body is not a PCS.
    Malformed,
    /// Unknown or disabled tenant.
    TenantRefused,
    /// Signature missing or invalid; the code keeps the name the audit log and the 401 body have
    /// always used.
    #[serde(rename = "signature_invalid")]
    SignatureRejected,
}

impl OutcomeClass {
    /// Every class, in a fixed order (for tables and tests).
    pub const ALL: [OutcomeClass; 6] = [
        OutcomeClass::Accepted,
        OutcomeClass::Escalated,
        OutcomeClass::Rejected,
        OutcomeClass::Malformed,
        OutcomeClass::TenantRefused,
        OutcomeClass::SignatureRejected,
    ];

    /// The stable code (stored, hashed as part of audit entries' `verdict`, sent in error bodies).
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Accepted => "accepted",
            OutcomeClass::Escalated => "escalated",
            OutcomeClass::Rejected => "rejected",
            OutcomeClass::Malformed => "malformed",
            OutcomeClass::TenantRefused => "tenant_refused",
            OutcomeClass::SignatureRejected => "signature_invalid",
        }
    }

    /// Parses [`OutcomeClass::as_str`].
    pub fn parse(code: &str) -> Option<Self> {
        OutcomeClass::ALL
            .into_iter()
            .find(|class| class.as_str() == code)
    }

    /// The class of a verification outcome: accepted when accepted and not escalated, escalated
    /// when accepted and escalated, rejected when not accepted.
    pub fn of_verification(accepted: bool, escalated: bool) -> Self {
        match (accepted, escalated) {
            (true, false) => OutcomeClass::Accepted,
            (true, true) => OutcomeClass::Escalated,
            (false, _) => OutcomeClass::Rejected,
        }
    }

    /// True for the classes of verified records (the only ones deduplicated and cached).
    pub fn is_verified(self) -> bool {
        matches!(
            self,
            OutcomeClass::Accepted | OutcomeClass::Escalated | OutcomeClass::Rejected
        )
    }
}

impl std::fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pinned_and_parse_back() {
        let codes: Vec<&str> = OutcomeClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            codes,
            [
                "accepted",
                "escalated",
                "rejected",
                "malformed",
                "tenant_refused",
                "signature_invalid"
            ]
        );
        for class in OutcomeClass::ALL {
            assert_eq!(OutcomeClass::parse(class.as_str()), Some(class));
            let json = serde_json::to_string(&class).unwrap_or_default();
            assert_eq!(json, format!("\"{class}\""));
        }
        assert_eq!(OutcomeClass::parse("status"), None);
    }

    #[test]
    fn verification_classes() {
        assert_eq!(
            OutcomeClass::of_verification(true, false),
            OutcomeClass::Accepted
        );
        assert_eq!(
            OutcomeClass::of_verification(true, true),
            OutcomeClass::Escalated
        );
        assert_eq!(
            OutcomeClass::of_verification(false, true),
            OutcomeClass::Rejected
        );
        assert_eq!(
            OutcomeClass::of_verification(false, false),
            OutcomeClass::Rejected
        );
    }
}
