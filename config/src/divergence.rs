//! `[divergence]`: the divergence checker (role `divergence-checker`), which compares this
//! region's dedup state with another region's every `interval_ms` and exports what differs
//! (`flk_geo_divergence_*`, alert `GeoDedupDivergence`). Off until `remote_region` is set.
//!
//! ```toml
//! [divergence]
//! remote_region = "b"
//! remote_postgres_url = "postgres://reader@db-b:5432/flk"
//! remote_schema = "flk"
//! interval_ms = 60000
//! ```

use serde::Deserialize;

use super::replication::region_id_ok;
use super::{ConfigError, invalid};

/// The divergence checker's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DivergenceConfig {
    /// The other region's id; empty (the default) runs no checker.
    pub remote_region: String,
    /// The other region's Postgres (read only: the checker writes nothing there).
    pub remote_postgres_url: String,
    /// The other region's projection schema.
    pub remote_schema: String,
    /// The other region's topic prefix (names where its rows came from); this region's when
    /// unset.
    pub remote_topic_prefix_opt: Option<String>,
    /// Time between comparisons.
    pub interval_ms: u64,
    /// Keys younger than this are left out (still replicating).
    pub settle_ms: u64,
    /// Largest key range compared key by key.
    pub leaf_keys: u32,
}

impl Default for DivergenceConfig {
    fn default() -> Self {
        DivergenceConfig {
            remote_region: String::new(),
            remote_postgres_url: String::new(),
            remote_schema: String::new(),
            remote_topic_prefix_opt: None,
            interval_ms: 60_000,
            settle_ms: 60_000,
            leaf_keys: 256,
        }
    }
}

impl DivergenceConfig {
    /// Whether a checker runs.
    pub fn enabled(&self) -> bool {
        !self.remote_region.is_empty()
    }

    pub(super) fn validate(&self, local_region: &str) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if !region_id_ok(&self.remote_region) {
            return Err(invalid(
                "divergence.remote_region",
                "must be 1-32 lowercase letters, digits or `-`",
            ));
        }
        if self.remote_region == local_region {
            return Err(invalid(
                "divergence.remote_region",
                format!("is this region ({local_region}); name the other one"),
            ));
        }
        if self.remote_postgres_url.is_empty() || self.remote_schema.is_empty() {
            return Err(invalid(
                "divergence.remote_postgres_url",
                "and divergence.remote_schema are required with divergence.remote_region",
            ));
        }
        if self.interval_ms < 1_000 {
            return Err(invalid("divergence.interval_ms", "must be at least 1000"));
        }
        if self.leaf_keys == 0 {
            return Err(invalid("divergence.leaf_keys", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        assert!(DivergenceConfig::default().validate("a").is_ok());
        let on = DivergenceConfig {
            remote_region: "b".into(),
            remote_postgres_url: "postgres://db-b/flk".into(),
            remote_schema: "flk".into(),
            ..DivergenceConfig::default()
        };
        assert!(on.validate("a").is_ok());
        assert!(on.validate("b").is_err(), "itself");
        let no_url = DivergenceConfig {
            remote_postgres_url: String::new(),
            ..on.clone()
        };
        assert!(no_url.validate("a").is_err());
        let too_often = DivergenceConfig {
            interval_ms: 10,
            ..on
        };
        assert!(too_often.validate("a").is_err());
    }
}
