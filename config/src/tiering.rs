//! `[tiering]` (the demoter) and `[tenants.<name>.tiering]` (each tenant's tier policy).
//!
//! Tiers: **hot** is Redis (`tenants.<name>.hot_ttl_secs`), **warm** is the Postgres `dedup` table,
//! **cold** is compressed segments in the object store. A warm row moves to the cold tier once it
//! is `warm_ttl_secs` old (counted from its decision, or from its last promotion back to warm), and
//! a cold segment is deleted once its newest entry is `cold_retention_secs_opt` old.
//!
//! Why `warm_ttl_secs >= dedup_ttl_secs` by default: a row whose dedup window has ended can never
//! decide a duplicate again, so moving it costs the write path nothing. A tenant may set
//! `allow_warm_below_dedup_window = true` to move rows earlier; dedup stays correct (a duplicate
//! of a cold key inside its window still gets the first outcome, a conflicting one 409), but the
//! projector then checks the cold index for every key it does not find warm.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// One tenant's tier policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicy {
    /// Age (since decision or promotion) at which a warm row moves to the cold tier.
    pub warm_ttl_secs: u64,
    /// Age (of a segment's newest decision) at which a cold segment is deleted; never when unset.
    pub cold_retention_secs_opt: Option<u64>,
    /// Allow `warm_ttl_secs` below the tenant's `dedup_ttl_secs` (see the module doc).
    pub allow_warm_below_dedup_window: bool,
}

impl Default for TierPolicy {
    fn default() -> Self {
        TierPolicy {
            warm_ttl_secs: 30 * 24 * 3600,
            cold_retention_secs_opt: None,
            allow_warm_below_dedup_window: false,
        }
    }
}

impl TierPolicy {
    pub(super) fn validate(&self, tenant: &str, dedup_ttl_secs: u64) -> Result<(), ConfigError> {
        let setting = |field: &str| format!("tenants.{tenant}.tiering.{field}");
        if self.warm_ttl_secs == 0 {
            return Err(invalid(setting("warm_ttl_secs"), "must be positive"));
        }
        if self.warm_ttl_secs < dedup_ttl_secs && !self.allow_warm_below_dedup_window {
            return Err(invalid(
                setting("warm_ttl_secs"),
                format!(
                    "{} is shorter than the dedup window ({dedup_ttl_secs} s): rows would leave \
                     Postgres while they can still decide duplicates; raise it or set \
                     allow_warm_below_dedup_window = true",
                    self.warm_ttl_secs
                ),
            ));
        }
        if let Some(retention) = self.cold_retention_secs_opt {
            if retention < self.warm_ttl_secs {
                return Err(invalid(
                    setting("cold_retention_secs_opt"),
                    "must be at least warm_ttl_secs (an entry is kept cold only after it was warm)",
                ));
            }
            if retention < dedup_ttl_secs {
                return Err(invalid(
                    setting("cold_retention_secs_opt"),
                    "must be at least the dedup window: deleting a key inside its window would \
                     let a duplicate be decided as new",
                ));
            }
        }
        Ok(())
    }

    /// `warm_ttl_secs` in milliseconds.
    pub fn warm_ttl_ms(&self) -> i64 {
        secs_to_ms(self.warm_ttl_secs)
    }

    /// `cold_retention_secs_opt` in milliseconds.
    pub fn cold_retention_ms_opt(&self) -> Option<i64> {
        self.cold_retention_secs_opt.map(secs_to_ms)
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The demoter: how often it runs and how it packs segments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieringConfig {
    /// Time between demotion cycles.
    pub demote_interval_ms: u64,
    /// A segment is written once its compressed size reaches this (128 KiB: smaller objects are
    /// skipped by S3 lifecycle transitions and cost more per byte), or sooner, see below.
    pub segment_target_bytes: u64,
    /// Most entries per segment (caps a segment's size and the memory one takes to build).
    pub segment_max_entries: usize,
    /// A segment below the target is still written once its oldest row has been due this long
    /// (so a quiet tenant's rows do not wait forever for company).
    pub segment_max_wait_ms: u64,
    /// zlib level, 0 (store) to 9 (smallest).
    pub zlib_level: u32,
    /// Most segments one cycle writes (the rest wait for the next cycle).
    pub max_segments_per_cycle: usize,
    /// Verified cold segments kept in memory for reads.
    pub read_cache_segments: usize,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            demote_interval_ms: 60_000,
            segment_target_bytes: 128 * 1024,
            segment_max_entries: 20_000,
            segment_max_wait_ms: 3_600_000,
            zlib_level: 6,
            max_segments_per_cycle: 100,
            read_cache_segments: 32,
        }
    }
}

impl TieringConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=86_400_000).contains(&self.demote_interval_ms) {
            return Err(invalid(
                "tiering.demote_interval_ms",
                "must be between 100 and 86400000",
            ));
        }
        if !(1..=(64 * 1024 * 1024)).contains(&self.segment_target_bytes) {
            return Err(invalid(
                "tiering.segment_target_bytes",
                "must be between 1 and 67108864",
            ));
        }
        if !(1..=200_000).contains(&self.segment_max_entries) {
            return Err(invalid(
                "tiering.segment_max_entries",
                "must be between 1 and 200000",
            ));
        }
        if self.zlib_level > 9 {
            return Err(invalid("tiering.zlib_level", "must be between 0 and 9"));
        }
        if self.max_segments_per_cycle == 0 {
            return Err(invalid(
                "tiering.max_segments_per_cycle",
                "must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_below_the_dedup_window_needs_an_explicit_yes() {
        let mut policy = TierPolicy {
            warm_ttl_secs: 60,
            ..TierPolicy::default()
        };
        let error = policy.validate("alpha", 3600).unwrap_err().to_string();
        assert!(
            error.contains("tenants.alpha.tiering.warm_ttl_secs"),
            "{error}"
        );
        assert!(error.contains("allow_warm_below_dedup_window"), "{error}");
        policy.allow_warm_below_dedup_window = true;
        policy.validate("alpha", 3600).expect("allowed");
    }

    #[test]
    fn retention_never_ends_inside_the_warm_tier_or_the_dedup_window() {
        let policy = TierPolicy {
            warm_ttl_secs: 100,
            cold_retention_secs_opt: Some(50),
            allow_warm_below_dedup_window: true,
        };
        assert!(policy.validate("t", 10).is_err());
        let policy = TierPolicy {
            warm_ttl_secs: 100,
            cold_retention_secs_opt: Some(150),
            allow_warm_below_dedup_window: true,
        };
        assert!(policy.validate("t", 200).is_err());
        policy.validate("t", 120).expect("valid");
    }

    #[test]
    fn defaults_are_valid() {
        TierPolicy::default()
            .validate("t", 14 * 24 * 3600)
            .expect("policy");
        TieringConfig::default().validate().expect("demoter");
    }
}
