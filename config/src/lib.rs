//! Configuration: one TOML file plus `FLK_*` environment overrides, validated once at start.
//!
//! Defaults live in one place (the `Default` impls below). The environment is passed in as a map so
//! tests never touch the process environment. Secrets are never printed: `Debug` of a key redacts it.
//!
//! Its own crate, apart from `infra` (which re-exports it as `infra::config`), so the loader can be
//! fuzzed (`fuzz/fuzz_targets/config_loader.rs`) without building the Kafka, Postgres and Redis
//! clients under a sanitizer. Keep its dependencies pure: `events`, serde, toml, base64, thiserror.
//! One section per file where a section has its own rules (`[audit]`, `[divergence]`,
//! `[object_store]`, `[replication]`, `[tiering]`); the rest is here.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use events::{TenantKey, TenantPolicy, VerifyParams, VerifyingSecret};
use serde::Deserialize;
use thiserror::Error;

mod audit;
mod divergence;
mod object_store;
mod replication;
mod tiering;
pub use audit::AuditConfig;
pub use divergence::DivergenceConfig;
pub use object_store::{ObjectStoreConfig, ObjectStoreKind};
pub use replication::{ReplicationConfig, ReplicationMode, ReplicationTarget};
pub use tiering::{TierPolicy, TieringConfig};

/// Why a configuration cannot be used. Always names the setting.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path given.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of its allowed range.
    #[error("invalid setting `{setting}`: {problem}")]
    Invalid {
        /// Dotted name of the setting.
        setting: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// The whole configuration of one `flk` process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Region id recorded in every decision (`FLK_REGION`).
    pub region: String,
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Postgres settings.
    pub postgres: PostgresConfig,
    /// Redis hot-tier settings.
    pub redis: RedisConfig,
    /// HTTP gateway settings.
    pub gateway: GatewayConfig,
    /// Projector settings.
    pub projector: ProjectorConfig,
    /// Supervision settings.
    pub supervision: SupervisionConfig,
    /// Trace export settings.
    pub telemetry: TelemetryConfig,
    /// Audit log anchoring.
    pub audit: AuditConfig,
    /// Object store (signed checkpoints, cold segments).
    pub object_store: ObjectStoreConfig,
    /// The demoter (tier moves).
    pub tiering: TieringConfig,
    /// Regions this region's submissions are mirrored to.
    pub replication: ReplicationConfig,
    /// The divergence checker (`[divergence]`).
    pub divergence: DivergenceConfig,
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Shifts this process's wall clock by this many milliseconds (`FLK_CLOCK_OFFSET_MS`; 0 by
    /// default). For fault tests of what depends on time (leases, tier ages, heartbeat lag):
    /// never set it in production. At most a week either way.
    pub clock_offset_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        let mut tenants = BTreeMap::new();
        tenants.insert("default".to_owned(), TenantConfig::default());
        Config {
            region: "local".to_owned(),
            kafka: KafkaConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            gateway: GatewayConfig::default(),
            projector: ProjectorConfig::default(),
            supervision: SupervisionConfig::default(),
            telemetry: TelemetryConfig::default(),
            audit: AuditConfig::default(),
            object_store: ObjectStoreConfig::default(),
            tiering: TieringConfig::default(),
            replication: ReplicationConfig::default(),
            divergence: DivergenceConfig::default(),
            tenants,
            clock_offset_ms: 0,
        }
    }
}

/// Kafka: the log of record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`FLK_KAFKA_BROKERS`).
    pub brokers: String,
    /// Prefix of every topic and consumer group name (`FLK_TOPIC_PREFIX`), e.g. `test123.`.
    pub topic_prefix: String,
    /// Partitions of the topics FLK creates.
    pub partitions: i32,
    /// Replication factor of the topics FLK creates.
    pub replication_factor: i32,
    /// Producer linger: small, because every gateway request waits for its record.
    pub linger_ms: u64,
    /// Longest a consumer fetch waits for data: small, for the same reason.
    pub fetch_wait_max_ms: u64,
    /// Bytes a consumer fetch waits for (at most `fetch_wait_max_ms`) before the broker answers.
    /// Under load the bytes are there at once; at a low rate a fetch waits a little to carry
    /// several records instead of one. The default, 4096 (about six records), cut the CPU per
    /// record at 1,000 requests/s by a fifth with the same p99, for about 5 ms more at the
    /// median (docs/benchmarks.md); 1 answers with the first record (lowest latency when idle:
    /// an idle pipeline otherwise waits `fetch_wait_max_ms` at each of its two consumers).
    pub fetch_min_bytes: u32,
    /// Most KiB of fetched records each group consumer keeps queued ahead of the actors (and the
    /// largest fetch): what bounds a process's memory while it drains a large backlog, whatever
    /// the partition count (librdkafka's own default is 64 MiB per consumer plus 100,000
    /// records per partition).
    pub consumer_queue_max_kbytes: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:19092".to_owned(),
            topic_prefix: String::new(),
            partitions: 12,
            replication_factor: 1,
            linger_ms: 1,
            fetch_wait_max_ms: 5,
            fetch_min_bytes: 4_096,
            consumer_queue_max_kbytes: 8_192,
        }
    }
}

impl KafkaConfig {
    /// `flk.submissions` with the prefix.
    pub fn submissions_topic(&self) -> String {
        format!("{}flk.submissions", self.topic_prefix)
    }

    /// `flk.decisions` with the prefix.
    pub fn decisions_topic(&self) -> String {
        format!("{}flk.decisions", self.topic_prefix)
    }

    /// `flk.audit.tasks` with the prefix: the async audit pipeline's work.
    pub fn audit_tasks_topic(&self) -> String {
        format!("{}flk.audit.tasks", self.topic_prefix)
    }

    /// `flk.audit.dlq` with the prefix: tasks that used up their attempts.
    pub fn audit_dlq_topic(&self) -> String {
        format!("{}flk.audit.dlq", self.topic_prefix)
    }

    /// `<origin>.flk.submissions` with the prefix: what region `origin`'s replicator ships here.
    pub fn mirrored_submissions_topic(&self, origin: &str) -> String {
        format!("{}{origin}.flk.submissions", self.topic_prefix)
    }

    /// `flk.heartbeats` with the prefix: one record a second from this region, mirrored to the
    /// others to measure replication lag (one partition).
    pub fn heartbeats_topic(&self) -> String {
        format!("{}flk.heartbeats", self.topic_prefix)
    }

    /// `<origin>.flk.heartbeats` with the prefix: `origin`'s heartbeats, mirrored here.
    pub fn mirrored_heartbeats_topic(&self, origin: &str) -> String {
        format!("{}{origin}.flk.heartbeats", self.topic_prefix)
    }

    /// `<origin>.flk.checkpoints` with the prefix: how far `origin`'s replicators got shipping
    /// here (compacted, one partition; see `events::replication_checkpoint`).
    pub fn mirrored_checkpoints_topic(&self, origin: &str) -> String {
        format!("{}{origin}.flk.checkpoints", self.topic_prefix)
    }

    /// `flk.ring` with the prefix: one event per change of the hot tier's ring (one partition,
    /// so the changes read back in order).
    pub fn ring_topic(&self) -> String {
        format!("{}flk.ring", self.topic_prefix)
    }

    /// A consumer group name with the prefix (`flk-shard`, `flk-projector`).
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }
}

/// Postgres: dedup, audit and offsets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL (`FLK_POSTGRES_URL`).
    pub url: String,
    /// Schema holding the projections (`FLK_POSTGRES_SCHEMA`); tests use one each.
    pub schema: String,
    /// Pool size.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:15432/flk".to_owned(),
            schema: "flk".to_owned(),
            pool_size: 8,
        }
    }
}

/// Redis: the hot tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Node URLs (`FLK_REDIS_URLS`, comma-separated); keys spread by a consistent hash ring.
    pub urls: Vec<String>,
    /// Prefix of every key (`FLK_REDIS_PREFIX`).
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            urls: vec!["redis://127.0.0.1:16379".to_owned()],
            key_prefix: "flk".to_owned(),
        }
    }
}

/// The HTTP gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address (`FLK_GATEWAY_LISTEN`); port 0 picks a free port.
    pub listen: String,
    /// Largest accepted body; larger gets 413 before anything is logged.
    pub max_body_bytes: usize,
    /// How long a request waits for its committed decision before answering 503.
    pub decision_timeout_ms: u64,
    /// Seconds advertised in `Retry-After` with 503.
    pub retry_after_secs: u64,
    /// Basic Auth for `/metrics` (`user:password`), none by default.
    pub metrics_basic_auth_opt: Option<String>,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Longest a request body may take to arrive, from the end of its headers (slow-body
    /// attacks hold a connection open a byte at a time); past it the answer is 408.
    pub body_timeout_ms: u64,
    /// Submissions per second accepted from one client address (the TCP peer; a proxy in front
    /// counts as one address), 0 for no limit. Checked before the tenant, so a stranger
    /// guessing tenant names is slowed down too.
    pub address_rate_per_second: f64,
    /// Burst allowed per client address.
    pub address_rate_burst: f64,
    /// Longest a lookup waits for the object store when the entry is in the cold tier; past it
    /// the answer is 503 `cold_tier_unavailable` (a frozen or partitioned store answers
    /// nothing, and the lookup must not hang until the client gives up).
    pub cold_read_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 1024 * 1024,
            decision_timeout_ms: 5_000,
            retry_after_secs: 1,
            metrics_basic_auth_opt: None,
            workers: 0,
            body_timeout_ms: 10_000,
            // Well above what one honest agent host sends, well below what floods a gateway of
            // this size (docs/benchmarks.md: about 1,000 signed submissions/s per 2 cores).
            address_rate_per_second: 2_000.0,
            address_rate_burst: 4_000.0,
            cold_read_timeout_ms: 3_000,
        }
    }
}

impl GatewayConfig {
    /// The decision deadline as a duration.
    pub fn decision_timeout(&self) -> Duration {
        Duration::from_millis(self.decision_timeout_ms)
    }

    /// The body deadline as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// The cold read deadline as a duration.
    pub fn cold_read_timeout(&self) -> Duration {
        Duration::from_millis(self.cold_read_timeout_ms)
    }
}

/// The projector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Most decisions applied in one Postgres transaction.
    pub max_batch: usize,
    /// Most projector transactions in flight at once (each covers every idle partition with
    /// events, up to `max_batch`). Only the first starts for any waiting event; each further one
    /// starts only when the idle partitions hold a full `max_batch` (a backlog), because
    /// concurrent small transactions cost Postgres more CPU per decision than they save in
    /// waiting. Must not exceed `postgres.pool_size`.
    pub max_transactions: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        // Measured on 2 cores (docs/benchmarks.md): one transaction at a time that takes every
        // partition with events gives the lowest latency at 1,000 requests/s, and 2,000-event
        // transactions the highest Kafka-mode rate; a second one in flight, for full batches
        // only, drains a backlog faster without changing the 1,000/s case.
        ProjectorConfig {
            max_batch: 2_000,
            max_transactions: 2,
        }
    }
}

/// Supervision of actors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// An actor whose loop has not made progress for this long is stuck and gets restarted.
    pub stuck_after_ms: u64,
    /// First restart delay after a failure; it doubles with each quick failure in a row.
    pub backoff_initial_ms: u64,
    /// Longest restart delay.
    pub backoff_max_ms: u64,
    /// Restarts of one actor allowed within `restart_window_secs`; one more and the process exits
    /// non-zero, so an orchestrator sees a crash loop instead of a process that looks alive.
    pub restart_budget: u32,
    /// The sliding window of `restart_budget`.
    pub restart_window_secs: u64,
    /// Longest wait for an actor to release partitions taken away by a rebalance.
    pub revoke_timeout_ms: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            stuck_after_ms: 30_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            restart_budget: 20,
            restart_window_secs: 300,
            revoke_timeout_ms: 20_000,
        }
    }
}

/// Trace export. Logs and Prometheus metrics need no settings here; traces leave the process
/// only when an OTLP endpoint is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`FLK_OTLP_ENDPOINT`), e.g. `http://127.0.0.1:4318`;
    /// spans go to `<base>/v1/traces` as protobuf. None: no spans are exported.
    pub otlp_endpoint_opt: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0 (`FLK_TRACE_SAMPLE_RATIO`). A request that arrives
    /// with a `traceparent` follows the caller's sampled flag instead, so a trace is never cut in two.
    pub sample_ratio: f64,
    /// Address of a listener for `/metrics`, `/debug/actors` and `/health` in this process,
    /// whatever its roles (`FLK_METRICS_LISTEN`, e.g. `0.0.0.0:9464`; port 0 picks a free one and
    /// prints it). Same Basic Auth as the gateway's `/metrics`. None: only a gateway serves them.
    pub metrics_listen_opt: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint_opt: None,
            service_name: "flk".to_owned(),
            sample_ratio: 1.0,
            metrics_listen_opt: None,
        }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint_opt {
            let rest = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"));
            let host_ok = rest.is_some_and(|rest| {
                let authority = rest.split('/').next().unwrap_or_default();
                !authority.is_empty() && !authority.starts_with(':')
            });
            if !host_ok
                || endpoint
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control())
            {
                return Err(invalid(
                    "telemetry.otlp_endpoint_opt",
                    "must be an http:// or https:// URL with a host, e.g. `http://127.0.0.1:4318`",
                ));
            }
            if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
                return Err(invalid(
                    "telemetry.otlp_endpoint_opt",
                    "give the collector's base URL; `/v1/traces` is appended",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        let name_ok = !self.service_name.is_empty()
            && self.service_name.len() <= 128
            && !self.service_name.chars().any(char::is_control);
        if !name_ok {
            return Err(invalid(
                "telemetry.service_name",
                "must be 1-128 characters without control characters",
            ));
        }
        Ok(())
    }

    /// The URL spans are posted to, when export is on.
    pub fn traces_url_opt(&self) -> Option<String> {
        self.otlp_endpoint_opt
            .as_ref()
            .map(|endpoint| format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    }
}

/// One tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Disabled tenants get 403 (their submissions are still logged and decided).
    pub enabled: bool,
    /// Verification keys; empty turns signing off for the tenant.
    pub keys: Vec<KeyConfig>,
    /// Accept legacy pre-hash HMAC signatures.
    pub accept_legacy_prehash: bool,
    /// Verification parameters (defaults of CONTRACT section 3).
    pub params: VerifyParams,
    /// Bump when `params` change, so decisions record which rules applied.
    pub params_version: u32,
    /// Dedup window: first write wins for this long.
    pub dedup_ttl_secs: u64,
    /// How long an outcome stays in the Redis hot tier.
    pub hot_ttl_secs: u64,
    /// When rows move from warm (Postgres) to cold (object store), and when cold ones go.
    pub tiering: TierPolicy,
    /// Sustained submissions per second (token bucket refill); 0 disables the limit.
    pub rate_per_second: f64,
    /// Bucket size: the burst allowed above the rate.
    pub rate_burst: f64,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            enabled: true,
            keys: Vec::new(),
            accept_legacy_prehash: false,
            params: VerifyParams::default(),
            params_version: 1,
            dedup_ttl_secs: 14 * 24 * 3600,
            hot_ttl_secs: 3600,
            tiering: TierPolicy::default(),
            rate_per_second: 0.0,
            rate_burst: 0.0,
        }
    }
}

/// One verification key. Exactly one of `hmac_secret` / `ed25519_public` is set.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id recorded in decisions.
    pub id: String,
    /// HMAC secret (UTF-8).
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// Ed25519 public key, standard base64 of 32 bytes.
    #[serde(default)]
    pub ed25519_public: Option<String>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("ed25519_public", &self.ed25519_public)
            .finish()
    }
}

/// The largest clock shift a process accepts: a week, far beyond any TTL a test needs.
const MAX_CLOCK_OFFSET_MS: u64 = 7 * 24 * 3_600 * 1_000;

impl Config {
    /// Reads `path` (or defaults when `None`), applies `FLK_*` overrides from `env`, validates.
    pub fn load(
        path_opt: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        match path_opt {
            None => Config::default().with_env_validated(env),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::load_from_text(&text, env)
            }
        }
    }

    /// [`Config::load`] of a file whose content is `text`: parses it, applies `FLK_*` overrides
    /// from `env`, validates. Public so the fuzz target runs exactly what `flk` runs on a file.
    pub fn load_from_text(text: &str, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_toml(text)?.with_env_validated(env)
    }

    fn with_env_validated(mut self, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        self.apply_env(env)?;
        self.validate()?;
        Ok(self)
    }

    /// Parses TOML (no environment, no validation).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))
    }

    /// Applies the `FLK_*` overrides.
    pub fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let get = |name: &str| env.get(name).filter(|value| !value.is_empty()).cloned();
        self.object_store.apply_env(&get);
        if let Some(value) = get("FLK_TSA_URL") {
            self.audit.tsa_url_opt = Some(value);
        }
        if let Some(value) = get("FLK_AUDIT_SIGNING_KEY_FILE") {
            self.audit.signing_key_file_opt = Some(value.into());
        }
        if let Some(value) = get("FLK_REGION") {
            self.region = value;
        }
        if let Some(value) = get("FLK_KAFKA_BROKERS") {
            self.kafka.brokers = value;
        }
        if let Some(value) = get("FLK_TOPIC_PREFIX") {
            self.kafka.topic_prefix = value;
        }
        if let Some(value) = get("FLK_KAFKA_PARTITIONS") {
            self.kafka.partitions = value
                .parse()
                .map_err(|_| invalid("FLK_KAFKA_PARTITIONS", "must be an integer"))?;
        }
        if let Some(value) = get("FLK_POSTGRES_URL") {
            self.postgres.url = value;
        }
        if let Some(value) = get("FLK_POSTGRES_SCHEMA") {
            self.postgres.schema = value;
        }
        if let Some(value) = get("FLK_REDIS_URLS") {
            self.redis.urls = value.split(',').map(|url| url.trim().to_owned()).collect();
        }
        if let Some(value) = get("FLK_REDIS_PREFIX") {
            self.redis.key_prefix = value;
        }
        if let Some(value) = get("FLK_GATEWAY_LISTEN") {
            self.gateway.listen = value;
        }
        if let Some(value) = get("FLK_METRICS_BASIC_AUTH") {
            self.gateway.metrics_basic_auth_opt = Some(value);
        }
        if let Some(value) = get("FLK_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint_opt = Some(value);
        }
        if let Some(value) = get("FLK_METRICS_LISTEN") {
            self.telemetry.metrics_listen_opt = Some(value);
        }
        if let Some(value) = get("FLK_CLOCK_OFFSET_MS") {
            self.clock_offset_ms = value
                .parse()
                .map_err(|_| invalid("FLK_CLOCK_OFFSET_MS", "must be an integer"))?;
        }
        if let Some(value) = get("FLK_TRACE_SAMPLE_RATIO") {
            self.telemetry.sample_ratio = value
                .parse()
                .map_err(|_| invalid("FLK_TRACE_SAMPLE_RATIO", "must be a number"))?;
        }
        Ok(())
    }

    /// Checks every setting once, with errors that name it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.region.is_empty() {
            return Err(invalid("region", "must not be empty"));
        }
        if self.clock_offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS {
            return Err(invalid(
                "clock_offset_ms",
                "must be within a week (604800000 ms) either way",
            ));
        }
        if self.kafka.brokers.is_empty() {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        if !(1..=1000).contains(&self.kafka.partitions) {
            return Err(invalid("kafka.partitions", "must be between 1 and 1000"));
        }
        if !(1..=1_048_576).contains(&self.kafka.fetch_min_bytes) {
            return Err(invalid(
                "kafka.fetch_min_bytes",
                "must be between 1 and 1048576 (1 MiB)",
            ));
        }
        if !(1_024..=1_048_576).contains(&self.kafka.consumer_queue_max_kbytes) {
            return Err(invalid(
                "kafka.consumer_queue_max_kbytes",
                "must be between 1024 (1 MiB, one record of the largest size) and 1048576 (1 GiB)",
            ));
        }
        let prefix_ok = self
            .kafka
            .topic_prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if !prefix_ok {
            return Err(invalid(
                "kafka.topic_prefix",
                "may hold only ASCII letters, digits, `.`, `_` and `-`",
            ));
        }
        let schema_ok = !self.postgres.schema.is_empty()
            && self.postgres.schema.len() <= 40
            && self
                .postgres
                .schema
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            && !self
                .postgres
                .schema
                .starts_with(|ch: char| ch.is_ascii_digit());
        if !schema_ok {
            return Err(invalid(
                "postgres.schema",
                "must be 1-40 lowercase letters, digits or `_`, not starting with a digit",
            ));
        }
        self.audit.validate()?;
        self.object_store.validate()?;
        self.tiering.validate()?;
        self.replication
            .validate(&self.region, |tenant| self.tenants.contains_key(tenant))?;
        self.divergence.validate(&self.region)?;
        if self.postgres.pool_size == 0 {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        if self.redis.urls.is_empty() {
            return Err(invalid("redis.urls", "needs at least one node"));
        }
        if self.gateway.max_body_bytes == 0 {
            return Err(invalid("gateway.max_body_bytes", "must be positive"));
        }
        if self.gateway.cold_read_timeout_ms == 0 {
            return Err(invalid("gateway.cold_read_timeout_ms", "must be positive"));
        }
        if self.gateway.body_timeout_ms == 0 {
            return Err(invalid("gateway.body_timeout_ms", "must be positive"));
        }
        if self.gateway.decision_timeout_ms == 0 {
            return Err(invalid("gateway.decision_timeout_ms", "must be positive"));
        }
        let address_rate = self.gateway.address_rate_per_second;
        if !(address_rate.is_finite() && address_rate >= 0.0) {
            return Err(invalid(
                "gateway.address_rate_per_second",
                "must be a number >= 0 (0 turns the limit off)",
            ));
        }
        if address_rate > 0.0
            && !(self.gateway.address_rate_burst.is_finite()
                && self.gateway.address_rate_burst >= 1.0)
        {
            return Err(invalid(
                "gateway.address_rate_burst",
                "must be at least 1 when gateway.address_rate_per_second is set",
            ));
        }
        if let Some(auth) = &self.gateway.metrics_basic_auth_opt {
            if !auth.contains(':') {
                return Err(invalid(
                    "gateway.metrics_basic_auth_opt",
                    "must be `user:password`",
                ));
            }
        }
        if !(1..=10_000).contains(&self.projector.max_batch) {
            return Err(invalid(
                "projector.max_batch",
                "must be between 1 and 10000",
            ));
        }
        if self.projector.max_transactions == 0
            || self.projector.max_transactions > self.postgres.pool_size
        {
            return Err(invalid(
                "projector.max_transactions",
                "must be between 1 and postgres.pool_size",
            ));
        }
        let supervision = &self.supervision;
        if supervision.backoff_initial_ms == 0
            || supervision.backoff_max_ms < supervision.backoff_initial_ms
        {
            return Err(invalid(
                "supervision.backoff_max_ms",
                "backoff_initial_ms must be at least 1 and at most backoff_max_ms",
            ));
        }
        if supervision.restart_budget == 0 || supervision.restart_window_secs == 0 {
            return Err(invalid(
                "supervision.restart_budget",
                "restart_budget and restart_window_secs must be at least 1",
            ));
        }
        if supervision.revoke_timeout_ms < 100 {
            return Err(invalid(
                "supervision.revoke_timeout_ms",
                "must be at least 100",
            ));
        }
        if self.supervision.stuck_after_ms < 1_000 {
            return Err(invalid(
                "supervision.stuck_after_ms",
                "must be at least 1000",
            ));
        }
        self.telemetry.validate()?;
        if self.tenants.is_empty() {
            return Err(invalid("tenants", "at least one tenant is required"));
        }
        for (name, tenant) in &self.tenants {
            tenant.validate(name)?;
        }
        Ok(())
    }

    /// The decider's view of every tenant.
    pub fn tenant_policies(&self) -> Result<HashMap<String, TenantPolicy>, ConfigError> {
        self.tenants
            .iter()
            .map(|(name, tenant)| Ok((name.clone(), tenant.policy(name)?)))
            .collect()
    }
}

impl TenantConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let setting = |field: &str| format!("tenants.{name}.{field}");
        if name.is_empty() || name.len() > 128 || name.contains('/') {
            return Err(invalid(
                format!("tenants.{name}"),
                "tenant names are 1-128 characters without `/`",
            ));
        }
        self.params
            .validate()
            .map_err(|problem| invalid(setting("params"), problem))?;
        if self.dedup_ttl_secs == 0 {
            return Err(invalid(setting("dedup_ttl_secs"), "must be positive"));
        }
        self.tiering.validate(name, self.dedup_ttl_secs)?;
        if !(self.rate_per_second >= 0.0 && self.rate_burst >= 0.0) {
            return Err(invalid(
                setting("rate_per_second"),
                "rates must not be negative",
            ));
        }
        if self.rate_per_second > 0.0 && self.rate_burst < 1.0 {
            return Err(invalid(
                setting("rate_burst"),
                "must be at least 1 when a rate is set",
            ));
        }
        self.policy(name).map(|_| ())
    }

    /// The pure decider's view of this tenant.
    pub fn policy(&self, name: &str) -> Result<TenantPolicy, ConfigError> {
        let mut seen = std::collections::HashSet::new();
        let keys = self
            .keys
            .iter()
            .map(|key| {
                let setting = format!("tenants.{name}.keys.{}", key.id);
                if key.id.is_empty() || !seen.insert(key.id.clone()) {
                    return Err(invalid(setting, "key ids must be non-empty and unique"));
                }
                let secret = match (&key.hmac_secret, &key.ed25519_public) {
                    (Some(secret), None) => VerifyingSecret::Hmac(secret.as_bytes().to_vec()),
                    (None, Some(public)) => VerifyingSecret::ed25519_from_base64(public)
                        .map_err(|error| invalid(&setting, error.to_string()))?,
                    _ => {
                        return Err(invalid(
                            setting,
                            "set exactly one of `hmac_secret` and `ed25519_public`",
                        ));
                    }
                };
                Ok(TenantKey {
                    id: key.id.clone(),
                    secret,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TenantPolicy {
            enabled: self.enabled,
            keys,
            accept_legacy_prehash: self.accept_legacy_prehash,
            params: self.params,
            params_version: self.params_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::load(None, &HashMap::new()).unwrap();
    }

    #[test]
    fn clock_offset_from_toml_or_env_within_a_week() {
        assert_eq!(Config::default().clock_offset_ms, 0);
        let config = Config::load_from_text("clock_offset_ms = -5000\n", &HashMap::new()).unwrap();
        assert_eq!(config.clock_offset_ms, -5_000);
        let env = HashMap::from([("FLK_CLOCK_OFFSET_MS".to_owned(), "600000".to_owned())]);
        assert_eq!(Config::load(None, &env).unwrap().clock_offset_ms, 600_000);
        let env = HashMap::from([("FLK_CLOCK_OFFSET_MS".to_owned(), "ten".to_owned())]);
        let error = Config::load(None, &env).unwrap_err().to_string();
        assert!(error.contains("FLK_CLOCK_OFFSET_MS"), "{error}");
        let error = Config::load_from_text("clock_offset_ms = 604800001\n", &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("clock_offset_ms"), "{error}");
    }

    #[test]
    fn fetch_min_bytes_is_checked() {
        let config =
            Config::load_from_text("[kafka]\nfetch_min_bytes = 1\n", &HashMap::new()).unwrap();
        assert_eq!(config.kafka.fetch_min_bytes, 1);
        for bad in ["0", "1048577"] {
            let error = Config::load_from_text(
                &format!("[kafka]\nfetch_min_bytes = {bad}\n"),
                &HashMap::new(),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("kafka.fetch_min_bytes"), "{error}");
        }
    }

    #[test]
    fn a_file_loads_like_its_text() {
        let text = "region = \"eu\"\n[kafka]\npartitions = 3\n";
        let env = HashMap::from([("FLK_TOPIC_PREFIX".to_owned(), "t1.".to_owned())]);
        let path = std::env::temp_dir().join(format!("flk-config-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let from_file = Config::load(path.to_str(), &env);
        std::fs::remove_file(&path).unwrap();
        let from_file = from_file.unwrap();
        let from_text = Config::load_from_text(text, &env).unwrap();
        for config in [from_file, from_text] {
            assert_eq!(config.region, "eu");
            assert_eq!(config.kafka.partitions, 3);
            assert_eq!(config.kafka.topic_prefix, "t1.");
        }
        let invalid = Config::load_from_text("[kafka]\npartitions = 0\n", &HashMap::new());
        assert!(
            invalid
                .unwrap_err()
                .to_string()
                .contains("kafka.partitions")
        );
        let missing = Config::load(Some("/nonexistent/flk.toml"), &HashMap::new());
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn toml_with_tenants_and_env_overrides() {
        let text = r#"
            region = "eu"
            [kafka]
            topic_prefix = "t1."
            [tenants.acme]
            rate_per_second = 10.0
            rate_burst = 20.0
            params = { tol_D = 0.2 }
            [[tenants.acme.keys]]
            id = "k1"
            hmac_secret = "testsecret"
            [[tenants.acme.keys]]
            id = "k2"
            ed25519_public = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        "#;
        let mut config = Config::from_toml(text).unwrap();
        let env = HashMap::from([("FLK_REGION".to_owned(), "us".to_owned())]);
        config.apply_env(&env).unwrap();
        config.validate().unwrap();
        assert_eq!(config.region, "us");
        assert_eq!(config.kafka.submissions_topic(), "t1.flk.submissions");
        let policies = config.tenant_policies().unwrap();
        assert_eq!(policies["acme"].keys.len(), 2);
        assert_eq!(policies["acme"].params.tol_d, 0.2);
        assert!(
            !policies.contains_key("default"),
            "listing tenants replaces the default"
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let unknown = Config::from_toml("[kafka]\nbrokerz = \"x\"").unwrap_err();
        assert!(unknown.to_string().contains("brokerz"), "{unknown}");
        let text = "[tenants.a]\n[[tenants.a.keys]]\nid = \"k\"\n";
        let error = Config::from_toml(text).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains("tenants.a.keys.k"), "{error}");
        let mut config = Config::default();
        config.postgres.schema = "Bad-Schema".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("postgres.schema")
        );
        let mut config = Config::default();
        config.projector.max_transactions = config.postgres.pool_size + 1;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("projector.max_transactions"), "{error}");
        let debug = format!(
            "{:?}",
            Config::from_toml(
                "[tenants.a]\n[[tenants.a.keys]]\nid = \"k\"\nhmac_secret = \"s3cret\"\n"
            )
            .unwrap()
        );
        assert!(!debug.contains("s3cret"));
    }

    #[test]
    fn telemetry_endpoint_from_toml_or_env_and_validated() {
        let config = Config::default();
        assert_eq!(
            config.telemetry.traces_url_opt(),
            None,
            "no export by default"
        );
        let mut config = Config::from_toml(
            "[telemetry]\notlp_endpoint_opt = \"http://127.0.0.1:4318/\"\nservice_name = \"flk-eu\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.telemetry.traces_url_opt().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        let env = HashMap::from([(
            "FLK_OTLP_ENDPOINT".to_owned(),
            "https://collector:4318".to_owned(),
        )]);
        config.apply_env(&env).unwrap();
        assert_eq!(
            config.telemetry.traces_url_opt().as_deref(),
            Some("https://collector:4318/v1/traces")
        );
        for bad in [
            "127.0.0.1:4318",
            "http://",
            "http://:4318",
            "http://a b",
            "http://127.0.0.1:4318/v1/traces",
        ] {
            let mut config = Config::default();
            config.telemetry.otlp_endpoint_opt = Some(bad.to_owned());
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("telemetry.otlp_endpoint_opt"),
                "{bad}: {error}"
            );
        }
        let mut config = Config::default();
        config.telemetry.service_name = String::new();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("telemetry.service_name"), "{error}");
        let mut config = Config::default();
        let env = HashMap::from([("FLK_TRACE_SAMPLE_RATIO".to_owned(), "0.25".to_owned())]);
        config.apply_env(&env).unwrap();
        assert_eq!(config.telemetry.sample_ratio, 0.25);
        config.telemetry.sample_ratio = 1.5;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("telemetry.sample_ratio"), "{error}");
    }
}
