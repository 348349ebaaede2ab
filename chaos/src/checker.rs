//! The history checker's judgement, apart from any service: given every client operation of a run
//! (invoke and completion, with what the client was told) and what the stores hold afterwards, it
//! names each anomaly with the offending key or coordinates. [`crate::history`] reads the stores
//! into an [`Observed`]; [`crate::load`] records the [`Operation`]s.
//!
//! What counts as wrong (Jepsen-style, for a first-write-wins store with a write-ahead log):
//! - an acknowledged record (200, 202 or 409) with no decision in the stores: **lost**;
//! - a key decided as a first record more than once: **decided twice**;
//! - a client told an outcome other than the stored first one for the same signed record, or
//!   told 200/202 for a record whose signed fields differ from the stored first one (it should
//!   have got 409): **first write wins broken**;
//! - the hot cache holding a key Postgres does not have, or another outcome or digest: **Redis
//!   ahead of Postgres**;
//! - an audit entry whose decision is not in the decisions topic, or the reverse;
//! - a dedup row without its audit entry, or the reverse (a decision applied by halves);
//! - a replay that rebuilds a different state hash.
//!
//! Operations whose outcome is unknown (a timeout, a 503, a broken connection) may be present or
//! absent, but never by halves: the last two rules cover them.

use std::collections::{BTreeMap, BTreeSet};

/// What a client learned from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Decided: the status (200, 202 or 409) and the outcome code it carried (for a 409, the
    /// stored first outcome's).
    Ok {
        /// HTTP status.
        status: u16,
        /// `accepted`, `escalated` or `rejected`.
        outcome_code: String,
    },
    /// Refused with a status that says nothing was decided for it (400, 401, 403, 413, 429).
    Fail {
        /// HTTP status.
        status: u16,
    },
    /// No knowing: a timeout, a 503 or a broken connection (the record may be in the log).
    Unknown,
}

/// One client operation: a submission attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Milliseconds since the run started, when it was sent.
    pub invoked_at_ms: u64,
    /// When its answer came (or the attempt was given up).
    pub completed_at_ms: u64,
    /// Tenant.
    pub tenant: String,
    /// Record id.
    pub pcs_id: String,
    /// Lowercase hex of the record's signed digest.
    pub digest: String,
    /// What the client was told.
    pub answer: Answer,
}

/// A stored first decision (a dedup row, or a hot cache entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Lowercase hex of the first record's signed digest.
    pub digest: String,
    /// Its outcome code.
    pub outcome_code: String,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Where its submission is in the log: (topic, partition, offset).
    pub source: (String, i32, i64),
    /// Tenant.
    pub tenant: String,
    /// Record id, when the body had one.
    pub pcs_id_opt: Option<String>,
    /// Lowercase hex of the signed digest, when verified.
    pub digest_opt: Option<String>,
    /// `first`, `duplicate`, `conflict`, `superseded` or `not_deduplicated`.
    pub dedup_result: String,
}

/// What the stores hold after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Dedup rows (the warm tier) by (tenant, pcs_id).
    pub dedup: BTreeMap<(String, String), Stored>,
    /// Keys the demoter moved to the cold tier (the `cold_keys` index), by (tenant, pcs_id): a
    /// first decision stored there is stored, not lost.
    pub cold: BTreeMap<(String, String), Stored>,
    /// Hot cache entries of the keys the history touched.
    pub cache: BTreeMap<(String, String), Stored>,
    /// The audit log.
    pub audit: Vec<AuditEntry>,
    /// Source coordinates of every decision event in the decisions topic.
    pub decisions: BTreeSet<(String, i32, i64)>,
    /// `flk state-hash` of the live state and of a replay, when one was run.
    pub state_hashes_opt: Option<(String, String)>,
}

impl Observed {
    /// The stored first decision of `key`, in the warm tier or else the cold one.
    pub fn stored(&self, key: &(String, String)) -> Option<&Stored> {
        self.dedup.get(key).or_else(|| self.cold.get(key))
    }
}

/// One thing wrong, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Anomaly {
    /// Acknowledged, and no decision stored.
    Lost {
        /// (tenant, pcs_id).
        key: (String, String),
    },
    /// More than one audit entry recording a first decision for the key.
    DecidedTwice {
        /// (tenant, pcs_id).
        key: (String, String),
        /// How many.
        firsts: usize,
    },
    /// A client told something other than the stored first outcome.
    FirstWriteWinsBroken {
        /// (tenant, pcs_id).
        key: (String, String),
        /// What the client was told (status and outcome code).
        told: String,
        /// What is stored.
        stored: String,
    },
    /// The hot cache has what Postgres does not.
    RedisAhead {
        /// (tenant, pcs_id).
        key: (String, String),
        /// What the cache holds.
        cached: String,
        /// What Postgres holds (`none`).
        stored: String,
    },
    /// An audit entry whose decision event is not in the decisions topic.
    AuditWithoutDecision {
        /// Its source coordinates.
        source: (String, i32, i64),
    },
    /// A decision event with no audit entry.
    DecisionWithoutAudit {
        /// Its source coordinates.
        source: (String, i32, i64),
    },
    /// A dedup row with no audit entry recording it as first, or the reverse.
    HalfApplied {
        /// (tenant, pcs_id).
        key: (String, String),
        /// Which half is there.
        present: &'static str,
    },
    /// The replayed state differs from the live one.
    ReplayDiffers {
        /// Live state hash.
        live: String,
        /// Replayed state hash.
        replay: String,
    },
}

/// Every anomaly of `operations` against `observed`, sorted, each once.
pub fn analyse(operations: &[Operation], observed: &Observed) -> Vec<Anomaly> {
    let mut found = BTreeSet::new();
    let firsts = first_entries(&observed.audit);
    for operation in operations {
        let key = (operation.tenant.clone(), operation.pcs_id.clone());
        let Answer::Ok {
            status,
            outcome_code,
        } = &operation.answer
        else {
            continue;
        };
        let Some(stored) = observed.stored(&key) else {
            found.insert(Anomaly::Lost { key });
            continue;
        };
        let told = format!("{status} {outcome_code}");
        let stored_text = format!("{} {}", stored.outcome_code, short(&stored.digest));
        let same_record = stored.digest == operation.digest;
        // Same record: the stored outcome and its status. Another record: 409 with the stored
        // first outcome.
        let right = if same_record {
            *status == status_of(&stored.outcome_code) && *outcome_code == stored.outcome_code
        } else {
            *status == 409 && *outcome_code == stored.outcome_code
        };
        if !right {
            found.insert(Anomaly::FirstWriteWinsBroken {
                key,
                told,
                stored: stored_text,
            });
        }
    }
    for (key, count) in &firsts {
        if *count > 1 {
            found.insert(Anomaly::DecidedTwice {
                key: key.clone(),
                firsts: *count,
            });
        }
        if observed.stored(key).is_none() {
            found.insert(Anomaly::HalfApplied {
                key: key.clone(),
                present: "audit entry without dedup row",
            });
        }
    }
    for key in observed.dedup.keys().chain(observed.cold.keys()) {
        if !firsts.contains_key(key) {
            found.insert(Anomaly::HalfApplied {
                key: key.clone(),
                present: "dedup row without audit entry",
            });
        }
    }
    for (key, cached) in &observed.cache {
        let stored = observed.stored(key);
        if stored != Some(cached) {
            found.insert(Anomaly::RedisAhead {
                key: key.clone(),
                cached: format!("{} {}", cached.outcome_code, short(&cached.digest)),
                stored: stored.map_or_else(
                    || "none".to_owned(),
                    |stored| format!("{} {}", stored.outcome_code, short(&stored.digest)),
                ),
            });
        }
    }
    let audited: BTreeSet<&(String, i32, i64)> =
        observed.audit.iter().map(|entry| &entry.source).collect();
    for source in &audited {
        if !observed.decisions.contains(*source) {
            found.insert(Anomaly::AuditWithoutDecision {
                source: (*source).clone(),
            });
        }
    }
    for source in &observed.decisions {
        if !audited.contains(source) {
            found.insert(Anomaly::DecisionWithoutAudit {
                source: source.clone(),
            });
        }
    }
    if let Some((live, replay)) = &observed.state_hashes_opt {
        if live != replay {
            found.insert(Anomaly::ReplayDiffers {
                live: live.clone(),
                replay: replay.clone(),
            });
        }
    }
    found.into_iter().collect()
}

/// Audit entries recording a first decision (or a cross-region superseding one), per key.
fn first_entries(audit: &[AuditEntry]) -> BTreeMap<(String, String), usize> {
    let mut firsts = BTreeMap::new();
    for entry in audit {
        if entry.dedup_result != "first" {
            continue;
        }
        if let Some(pcs_id) = &entry.pcs_id_opt {
            *firsts
                .entry((entry.tenant.clone(), pcs_id.clone()))
                .or_insert(0) += 1;
        }
    }
    firsts
}

/// The status CONTRACT section 4 gives a stored first outcome (the checker observes the service
/// from outside, so it holds the contract's table, not the gateway's code).
pub fn status_of(outcome_code: &str) -> u16 {
    match outcome_code {
        "accepted" => 200,
        "escalated" | "rejected" => 202,
        "malformed" => 400,
        "signature_invalid" => 401,
        "tenant_refused" => 403,
        _ => 0,
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn key(pcs_id: &str) -> (String, String) {
        ("t".to_owned(), pcs_id.to_owned())
    }

    fn op(pcs_id: &str, digest: &str, answer: Answer) -> Operation {
        Operation {
            invoked_at_ms: 1,
            completed_at_ms: 2,
            tenant: "t".into(),
            pcs_id: pcs_id.into(),
            digest: digest.into(),
            answer,
        }
    }

    fn ok(status: u16, outcome_code: &str) -> Answer {
        Answer::Ok {
            status,
            outcome_code: outcome_code.into(),
        }
    }

    fn stored(digest: &str, outcome_code: &str) -> Stored {
        Stored {
            digest: digest.into(),
            outcome_code: outcome_code.into(),
        }
    }

    fn entry(offset: i64, pcs_id: &str, digest: &str, dedup_result: &str) -> AuditEntry {
        AuditEntry {
            source: ("s".into(), 0, offset),
            tenant: "t".into(),
            pcs_id_opt: Some(pcs_id.into()),
            digest_opt: Some(digest.into()),
            dedup_result: dedup_result.into(),
        }
    }

    /// A clean run: p1 accepted, sent again (a duplicate), then a conflicting record (409); p2
    /// escalated; p3's answer never came and it is absent; p4's never came and it is present;
    /// a malformed body refused. Stores agree, the hot cache holds p1.
    fn clean() -> (Vec<Operation>, Observed) {
        let operations = vec![
            op("p1", A, ok(200, "accepted")),
            op("p1", A, ok(200, "accepted")),
            op("p1", B, ok(409, "accepted")),
            op("p2", A, ok(202, "escalated")),
            op("p3", A, Answer::Unknown),
            op("p4", B, Answer::Unknown),
            op("p5", A, Answer::Fail { status: 400 }),
        ];
        let audit = vec![
            entry(0, "p1", A, "first"),
            entry(1, "p1", A, "duplicate"),
            entry(2, "p1", B, "conflict"),
            entry(3, "p2", A, "first"),
            entry(4, "p4", B, "first"),
            AuditEntry {
                source: ("s".into(), 0, 5),
                tenant: "t".into(),
                pcs_id_opt: None,
                digest_opt: None,
                dedup_result: "not_deduplicated".into(),
            },
        ];
        let observed = Observed {
            dedup: [
                (key("p1"), stored(A, "accepted")),
                (key("p2"), stored(A, "escalated")),
                (key("p4"), stored(B, "accepted")),
            ]
            .into_iter()
            .collect(),
            cold: BTreeMap::new(),
            cache: [(key("p1"), stored(A, "accepted"))].into_iter().collect(),
            decisions: audit.iter().map(|entry| entry.source.clone()).collect(),
            audit,
            state_hashes_opt: Some(("h".into(), "h".into())),
        };
        (operations, observed)
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let (operations, observed) = clean();
        assert_eq!(analyse(&operations, &observed), vec![]);
    }

    #[test]
    fn a_lost_acknowledged_record_is_named() {
        let (operations, mut observed) = clean();
        observed.dedup.remove(&key("p2"));
        observed
            .audit
            .retain(|entry| entry.pcs_id_opt.as_deref() != Some("p2"));
        observed.decisions.remove(&("s".into(), 0, 3));
        assert_eq!(
            analyse(&operations, &observed),
            vec![Anomaly::Lost { key: key("p2") }]
        );
    }

    #[test]
    fn a_second_first_decision_is_named() {
        let (operations, mut observed) = clean();
        observed.audit.push(entry(9, "p2", B, "first"));
        observed.decisions.insert(("s".into(), 0, 9));
        assert_eq!(
            analyse(&operations, &observed),
            vec![Anomaly::DecidedTwice {
                key: key("p2"),
                firsts: 2
            }]
        );
    }

    #[test]
    fn a_duplicate_told_another_outcome_breaks_first_write_wins() {
        let (mut operations, observed) = clean();
        operations.push(op("p1", A, ok(202, "escalated")));
        assert_eq!(
            analyse(&operations, &observed),
            vec![Anomaly::FirstWriteWinsBroken {
                key: key("p1"),
                told: "202 escalated".into(),
                stored: "accepted aaaaaaaaaaaa".into(),
            }]
        );
    }

    #[test]
    fn a_conflicting_record_told_200_breaks_first_write_wins() {
        let (mut operations, observed) = clean();
        operations.push(op("p1", B, ok(200, "accepted")));
        let found = analyse(&operations, &observed);
        assert!(
            matches!(&found[..], [Anomaly::FirstWriteWinsBroken { key: k, told, .. }] if *k == key("p1") && told == "200 accepted"),
            "{found:?}"
        );
    }

    #[test]
    fn a_cache_entry_postgres_does_not_have_is_redis_ahead() {
        let (operations, mut observed) = clean();
        observed.cache.insert(key("p9"), stored(A, "accepted"));
        observed.cache.insert(key("p2"), stored(B, "escalated"));
        assert_eq!(
            analyse(&operations, &observed),
            vec![
                Anomaly::RedisAhead {
                    key: key("p2"),
                    cached: "escalated bbbbbbbbbbbb".into(),
                    stored: "escalated aaaaaaaaaaaa".into(),
                },
                Anomaly::RedisAhead {
                    key: key("p9"),
                    cached: "accepted aaaaaaaaaaaa".into(),
                    stored: "none".into(),
                },
            ]
        );
    }

    #[test]
    fn audit_and_decisions_must_match_both_ways() {
        let (operations, mut observed) = clean();
        observed.decisions.remove(&("s".into(), 0, 5));
        observed.decisions.insert(("s".into(), 1, 0));
        assert_eq!(
            analyse(&operations, &observed),
            vec![
                Anomaly::AuditWithoutDecision {
                    source: ("s".into(), 0, 5)
                },
                Anomaly::DecisionWithoutAudit {
                    source: ("s".into(), 1, 0)
                },
            ]
        );
    }

    #[test]
    fn an_unknown_operation_applied_by_halves_is_named() {
        let (operations, mut observed) = clean();
        // p4's answer never came: its dedup row is there, its audit entry is not.
        observed
            .audit
            .retain(|entry| entry.pcs_id_opt.as_deref() != Some("p4"));
        observed.decisions.remove(&("s".into(), 0, 4));
        observed.audit.push(entry(7, "p3", A, "first"));
        observed.decisions.insert(("s".into(), 0, 7));
        assert_eq!(
            analyse(&operations, &observed),
            vec![
                Anomaly::HalfApplied {
                    key: key("p3"),
                    present: "audit entry without dedup row",
                },
                Anomaly::HalfApplied {
                    key: key("p4"),
                    present: "dedup row without audit entry",
                },
            ]
        );
    }

    #[test]
    fn a_replay_with_another_state_hash_is_named() {
        let (operations, mut observed) = clean();
        observed.state_hashes_opt = Some(("live".into(), "replayed".into()));
        assert_eq!(
            analyse(&operations, &observed),
            vec![Anomaly::ReplayDiffers {
                live: "live".into(),
                replay: "replayed".into()
            }]
        );
    }

    #[test]
    fn a_first_decision_moved_to_the_cold_tier_is_stored_not_lost() {
        let (operations, mut observed) = clean();
        let moved = observed.dedup.remove(&key("p2")).unwrap();
        observed.cold.insert(key("p2"), moved);
        assert_eq!(analyse(&operations, &observed), vec![]);
        // Gone from both tiers, it is lost.
        observed.cold.clear();
        assert!(
            analyse(&operations, &observed).contains(&Anomaly::Lost { key: key("p2") }),
            "{:?}",
            analyse(&operations, &observed)
        );
    }
}
