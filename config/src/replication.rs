//! `[[replication.targets]]`: the regions this region ships its submissions to (one replicator
//! per target; docs/runbooks/geo-dr.md). Each target names the remote region, its Kafka cluster,
//! and which tenants go there: `mode = "full"` ships every tenant, `mode = "selective"` only the
//! listed ones.
//!
//! `origins` names the regions that ship here, so this region decides their mirrored
//! submissions too.
//!
//! ```toml
//! [replication]
//! origins = ["b"]
//!
//! [[replication.targets]]
//! region = "b"
//! brokers = "10.1.0.5:9092"
//! mode = "selective"
//! tenants = ["acme"]
//! ```

use serde::Deserialize;

use super::{ConfigError, KafkaConfig, invalid};

/// Where this region's submissions are mirrored, and whose mirrored submissions it decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Remote regions; empty (the default) runs no replicator.
    pub targets: Vec<ReplicationTarget>,
    /// Regions whose replicators ship here: a shard group per origin decides
    /// `<prefix><origin>.flk.submissions` like local submissions.
    pub origins: Vec<String>,
}

/// Which tenants a target receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationMode {
    /// Every tenant.
    #[default]
    Full,
    /// Only the tenants listed in `tenants`.
    Selective,
}

/// One remote region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationTarget {
    /// The remote region's id (its own `region` setting).
    pub region: String,
    /// The remote Kafka cluster's bootstrap servers.
    pub brokers: String,
    /// The remote cluster's topic prefix; this region's own prefix when unset.
    pub topic_prefix_opt: Option<String>,
    /// `full` or `selective`.
    pub mode: ReplicationMode,
    /// Tenants shipped in `selective` mode.
    pub tenants: Vec<String>,
}

impl ReplicationTarget {
    /// The remote cluster's settings: this region's producer and consumer settings with the
    /// target's brokers and topic prefix.
    pub fn kafka(&self, local: &KafkaConfig) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers.clone(),
            topic_prefix: self
                .topic_prefix_opt
                .clone()
                .unwrap_or_else(|| local.topic_prefix.clone()),
            ..local.clone()
        }
    }
}

/// A region id: what goes into topic names (`<region>.flk.submissions`) and headers.
pub(super) fn region_id_ok(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
}

impl ReplicationConfig {
    /// The `[[replication.targets]]` entry of `region`, if this region ships there.
    pub fn target(&self, region: &str) -> Option<&ReplicationTarget> {
        self.targets.iter().find(|target| target.region == region)
    }

    /// Checks every target against this region and its tenants.
    pub(super) fn validate(
        &self,
        local_region: &str,
        is_tenant: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        for (index, origin) in self.origins.iter().enumerate() {
            let setting = format!("replication.origins[{index}]");
            if !region_id_ok(origin) {
                return Err(invalid(
                    setting,
                    "must be 1-32 lowercase letters, digits or `-`",
                ));
            }
            if origin == local_region {
                return Err(invalid(
                    setting,
                    format!(
                        "is this region ({local_region}); its own submissions are decided anyway"
                    ),
                ));
            }
            if self.origins[..index].contains(origin) {
                return Err(invalid(setting, format!("region {origin} is listed twice")));
            }
        }
        if !self.targets.is_empty() && !region_id_ok(local_region) {
            return Err(invalid(
                "region",
                "must be 1-32 lowercase letters, digits or `-` when replication.targets are set \
                 (it names the mirrored topic <region>.flk.submissions in the other regions)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, target) in self.targets.iter().enumerate() {
            let setting = |field: &str| format!("replication.targets[{index}].{field}");
            if !region_id_ok(&target.region) {
                return Err(invalid(
                    setting("region"),
                    "must be 1-32 lowercase letters, digits or `-`",
                ));
            }
            if target.region == local_region {
                return Err(invalid(
                    setting("region"),
                    format!("is this region ({local_region}); a region does not ship to itself"),
                ));
            }
            if !seen.insert(target.region.as_str()) {
                return Err(invalid(
                    setting("region"),
                    format!("region {} is listed twice", target.region),
                ));
            }
            if target.brokers.trim().is_empty() {
                return Err(invalid(setting("brokers"), "must not be empty"));
            }
            match target.mode {
                ReplicationMode::Full if !target.tenants.is_empty() => {
                    return Err(invalid(
                        setting("tenants"),
                        "only applies to mode = \"selective\" (full mode ships every tenant)",
                    ));
                }
                ReplicationMode::Selective if target.tenants.is_empty() => {
                    return Err(invalid(
                        setting("tenants"),
                        "selective mode needs at least one tenant",
                    ));
                }
                _ => {}
            }
            if let Some(unknown) = target.tenants.iter().find(|tenant| !is_tenant(tenant)) {
                return Err(invalid(
                    setting("tenants"),
                    format!("tenant {unknown} is not configured in this region"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(region: &str) -> ReplicationTarget {
        ReplicationTarget {
            region: region.into(),
            brokers: "127.0.0.1:19192".into(),
            ..ReplicationTarget::default()
        }
    }

    fn check(targets: Vec<ReplicationTarget>) -> Result<(), String> {
        ReplicationConfig {
            targets,
            origins: vec!["b".into()],
        }
        .validate("a", |tenant| tenant == "acme")
        .map_err(|error| error.to_string())
    }

    #[test]
    fn a_full_target_and_a_selective_one_with_known_tenants_pass() {
        let mut selective = target("c");
        selective.mode = ReplicationMode::Selective;
        selective.tenants = vec!["acme".into()];
        assert_eq!(check(vec![target("b"), selective]), Ok(()));
        assert_eq!(check(Vec::new()), Ok(()));
    }

    #[test]
    fn each_mistake_names_its_setting() {
        let error = check(vec![target("a")]).unwrap_err();
        assert!(error.contains("replication.targets[0].region"), "{error}");
        assert!(error.contains("does not ship to itself"), "{error}");
        let error = check(vec![target("b"), target("b")]).unwrap_err();
        assert!(
            error.contains("targets[1].region") && error.contains("twice"),
            "{error}"
        );
        let error = check(vec![target("B!")]).unwrap_err();
        assert!(error.contains("lowercase"), "{error}");
        let mut no_brokers = target("b");
        no_brokers.brokers = " ".into();
        assert!(check(vec![no_brokers]).unwrap_err().contains("brokers"));
        let mut empty_selective = target("b");
        empty_selective.mode = ReplicationMode::Selective;
        assert!(
            check(vec![empty_selective])
                .unwrap_err()
                .contains("at least one tenant")
        );
        let mut full_with_tenants = target("b");
        full_with_tenants.tenants = vec!["acme".into()];
        assert!(
            check(vec![full_with_tenants])
                .unwrap_err()
                .contains("only applies")
        );
        let origins = |origins: &[&str]| ReplicationConfig {
            targets: Vec::new(),
            origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
        };
        let error = origins(&["a"])
            .validate("a", |_| true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("replication.origins[0]"), "{error}");
        let error = origins(&["b", "b"])
            .validate("a", |_| true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("twice"), "{error}");
        let mut unknown = target("b");
        unknown.mode = ReplicationMode::Selective;
        unknown.tenants = vec!["ghost".into()];
        assert!(check(vec![unknown]).unwrap_err().contains("tenant ghost"));
    }
}
