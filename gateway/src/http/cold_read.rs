//! Lookups that reach the cold tier: `GET /v1/pcs/{pcs_id}` for a key without a warm row.
//!
//! The cold key index names the segment; the reader serves the entry only from a copy of the
//! segment that passed its manifest's checks (size, SHA-256, Merkle root), and the entry must
//! carry the signed digest the index recorded. A served entry is promoted back to warm (due for
//! the cold tier again `warm_ttl` from now) and put in the hot cache (its hot TTL, never past its
//! dedup window), both best effort. An object store that does not answer gives 503 with
//! Retry-After (`cold_tier_unavailable`); a missing or corrupt object gives 503
//! `cold_segment_unreadable`, is logged and counted, and is never served.

use std::time::Instant;

use projections::StoredOutcome;
use projections::cold_objects::ColdReadError;
use projections::cold_tier::stored_outcome_of;

use super::AppState;
use super::status::ApiError;

/// The stored outcome of `(tenant, pcs_id)` from the cold tier, `None` when it is not there.
pub async fn lookup(
    state: &AppState,
    tenant: &str,
    pcs_id: &str,
) -> Result<Option<StoredOutcome>, ApiError> {
    let retry_after_secs = state.config.retry_after_secs;
    let key = match state.store.cold_key(tenant, pcs_id).await {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(None),
        Err(error) => {
            return Err(ApiError::Store {
                error,
                retry_after_secs,
            });
        }
    };
    let started = Instant::now();
    let metrics = &state.metrics;
    let deadline = state.config.cold_read_timeout();
    let read = tokio::time::timeout(deadline, state.cold.entry(&key.segment, pcs_id))
        .await
        .unwrap_or_else(|_| {
            Err(ColdReadError::Unavailable(format!(
                "no answer from the object store within {} ms",
                deadline.as_millis()
            )))
        })
        .and_then(|(entry, from_cache)| {
            if entry.signed_digest == hex::encode(key.signed_digest) && entry.tenant == tenant {
                Ok((entry, from_cache))
            } else {
                Err(ColdReadError::Unreadable {
                    segment_key: key.segment.segment_key.clone(),
                    reason: "the entry differs from the cold key index".to_owned(),
                })
            }
        });
    let (entry, from_cache) = match read {
        Ok(found) => found,
        Err(error) => {
            let (reason, code) = match &error {
                ColdReadError::Unavailable(_) => ("unavailable", "cold_tier_unavailable"),
                ColdReadError::Unreadable { .. } | ColdReadError::NotInSegment(_) => {
                    ("unreadable", "cold_segment_unreadable")
                }
            };
            metrics.tier_cold_misses.with_label_values(&[reason]).inc();
            if reason == "unavailable" {
                tracing::warn!(error = %error, "cold read failed: object store unavailable");
            } else {
                tracing::error!(error = %error, "cold read refused: segment fails its checks");
            }
            return Err(ApiError::ColdTier {
                code,
                message: match reason {
                    "unavailable" => {
                        "this entry is in the cold tier and the object store is unavailable; retry"
                            .to_owned()
                    }
                    _ => "this entry is in the cold tier and its segment fails verification; \
                          an operator has been told (flk tier verify)"
                        .to_owned(),
                },
                retry_after_secs,
            });
        }
    };
    let source = if from_cache { "cache" } else { "object" };
    let tenant_label = state.tenant_label(tenant);
    metrics
        .tier_cold_reads
        .with_label_values(&[tenant_label, source])
        .inc();
    metrics
        .tier_cold_read_latency
        .with_label_values(&[source])
        .observe(started.elapsed().as_secs_f64());
    let stored = match stored_outcome_of(&entry) {
        Ok(stored) => stored,
        Err(error) => {
            return Err(ApiError::Store {
                error,
                retry_after_secs,
            });
        }
    };
    promote(state, &entry, &stored, tenant_label).await;
    Ok(Some(stored))
}

/// Lazy promotion: back to warm and into the hot cache. Best effort; a failure only means the
/// next read goes to the cold tier again.
async fn promote(
    state: &AppState,
    entry: &events::cold_segment::ColdEntry,
    stored: &StoredOutcome,
    tenant_label: &str,
) {
    match state.store.promote(entry, infra::clock::now_ms()).await {
        Ok(true) => state
            .metrics
            .tier_promotions
            .with_label_values(&[tenant_label])
            .inc(),
        Ok(false) => {}
        Err(error) => tracing::debug!(error = %error, "cold entry not promoted"),
    }
    super::submit::refill_hot(state, stored).await;
}
