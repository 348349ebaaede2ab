//! A throwaway deployment: unique names on the shared local stack, and its config file.

use std::path::PathBuf;

use anyhow::Context as _;

/// Addresses of the local stack, from the environment (`infra/scripts/stack.sh env`).
#[derive(Debug, Clone)]
pub struct StackEnv {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Postgres URL.
    pub postgres_url: String,
    /// Redis node URLs.
    pub redis_urls: Vec<String>,
    /// The cluster's LINK listener (what a link proxy forwards to), when the stack has one.
    pub link_upstream_opt: Option<String>,
    /// The address the LINK listener advertises: where a link proxy must listen, and what
    /// another region's replicator is given as brokers to go through it.
    pub link_brokers_opt: Option<String>,
}

impl StackEnv {
    /// Reads the stack's addresses; a clear error when the stack's environment is missing.
    pub fn from_env() -> anyhow::Result<Self> {
        let get = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: start the stack with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`")
            })
        };
        Ok(StackEnv {
            brokers: get("FLK_KAFKA_BROKERS")?,
            postgres_url: get("FLK_POSTGRES_URL")?,
            redis_urls: get("FLK_REDIS_URLS")?
                .split(',')
                .map(str::to_owned)
                .collect(),
            link_upstream_opt: std::env::var("FLK_KAFKA_LINK_UPSTREAM").ok(),
            link_brokers_opt: std::env::var("FLK_KAFKA_LINK_BROKERS").ok(),
        })
    }

    /// Region b's addresses (its own Kafka cluster, database and Redis nodes); a clear error
    /// when region b is not running.
    pub fn region_b() -> anyhow::Result<Self> {
        let get = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "{name} is not set: start region b with `infra/scripts/stack.sh up --regions a,b` \
                     and `. .local/stack/env.sh`"
                )
            })
        };
        Ok(StackEnv {
            brokers: get("FLK_REGION_B_KAFKA_BROKERS")?,
            postgres_url: get("FLK_REGION_B_POSTGRES_URL")?,
            redis_urls: get("FLK_REGION_B_REDIS_URLS")?
                .split(',')
                .map(str::to_owned)
                .collect(),
            link_upstream_opt: std::env::var("FLK_REGION_B_LINK_UPSTREAM").ok(),
            link_brokers_opt: std::env::var("FLK_REGION_B_LINK_BROKERS").ok(),
        })
    }

    /// The link listener's (upstream, advertised) addresses; a clear error when the stack was
    /// started by scripts without LINK listeners.
    pub fn link(&self) -> anyhow::Result<(String, String)> {
        match (&self.link_upstream_opt, &self.link_brokers_opt) {
            (Some(upstream), Some(brokers)) => Ok((upstream.clone(), brokers.clone())),
            _ => anyhow::bail!(
                "no LINK listener addresses (FLK_KAFKA_LINK_*, FLK_REGION_B_LINK_*): restart the \
                 stack with `infra/scripts/stack.sh down && infra/scripts/stack.sh up --regions a,b` \
                 and `. .local/stack/env.sh`"
            ),
        }
    }
}

/// Two regions shipping to each other: region a on the environment's stack, region b on region
/// b's, each deciding the other's mirrored submissions. With `through_link`, each replicator
/// reaches the other cluster at its LINK address (through a link proxy the test runs).
pub fn two_regions(
    tenants: impl Fn() -> Vec<TestTenant>,
    through_link: bool,
) -> anyhow::Result<(Deployment, Deployment)> {
    let mut a = Deployment::new(tenants())?;
    let mut b = Deployment::on(StackEnv::region_b()?, tenants())?;
    a.region = "a".into();
    b.region = "b".into();
    let brokers = |target: &Deployment| -> anyhow::Result<String> {
        Ok(if through_link {
            target.stack.link()?.1
        } else {
            target.stack.brokers.clone()
        })
    };
    a.extra_toml = replication_toml("b", &brokers(&b)?, &b.topic_prefix);
    b.extra_toml = replication_toml("a", &brokers(&a)?, &a.topic_prefix);
    Ok((a, b))
}

/// `[replication]` of a region that decides `other`'s mirrored submissions and ships its own
/// to `other`'s cluster at `brokers` under `other_prefix`.
pub fn replication_toml(other: &str, brokers: &str, other_prefix: &str) -> String {
    format!(
        "[replication]\norigins = [\"{other}\"]\n[[replication.targets]]\nregion = \"{other}\"\n\
         brokers = \"{brokers}\"\ntopic_prefix_opt = \"{other_prefix}\"\n"
    )
}

/// One tenant of a test deployment.
#[derive(Debug, Clone)]
pub struct TestTenant {
    /// Name (the `X-Tenant-Id`).
    pub name: String,
    /// HMAC secret; `None` turns signing off.
    pub hmac_secret_opt: Option<String>,
    /// Enabled or not.
    pub enabled: bool,
    /// Rate limit `(per second, burst)`.
    pub rate_opt: Option<(f64, f64)>,
    /// More `key = value` lines of the tenant's table (`hot_ttl_secs = 1`).
    pub settings_toml: String,
}

impl TestTenant {
    /// An enabled tenant signing with `secret`, without a rate limit.
    pub fn signed(name: &str, secret: &str) -> Self {
        TestTenant {
            name: name.to_owned(),
            hmac_secret_opt: Some(secret.to_owned()),
            enabled: true,
            rate_opt: None,
            settings_toml: String::new(),
        }
    }
}

/// Unique topic prefix, schema and key prefix on the shared stack, plus a config file.
#[derive(Debug)]
pub struct Deployment {
    /// Stack addresses.
    pub stack: StackEnv,
    /// The region id in the config (`test` unless a test sets it).
    pub region: String,
    /// Random id the names derive from.
    pub id: String,
    /// Kafka topic prefix (`<id>.`).
    pub topic_prefix: String,
    /// Postgres schema.
    pub schema: String,
    /// Partitions of the topics.
    pub partitions: i32,
    /// Tenants.
    pub tenants: Vec<TestTenant>,
    /// Decision deadline of the gateway.
    pub decision_timeout_ms: u64,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Directory holding the config file and process logs.
    pub dir: PathBuf,
    /// TOML appended to the generated config (extra sections).
    pub extra_toml: String,
    /// Where the `flk` processes reach Postgres, when not at the stack's address (a fault proxy
    /// in front of it); the tests' own reads still go straight to the stack.
    pub flk_postgres_url_opt: Option<String>,
    /// Where the `flk` processes reach Redis, when not at the stack's addresses.
    pub flk_redis_urls_opt: Option<Vec<String>>,
    /// Where the `flk` processes reach Kafka, when not at the stack's address (a fault proxy in
    /// front of a listener that advertises the proxy).
    pub flk_brokers_opt: Option<String>,
}

impl Deployment {
    /// A deployment with fresh names and the given tenants.
    pub fn new(tenants: Vec<TestTenant>) -> anyhow::Result<Self> {
        Self::on(StackEnv::from_env()?, tenants)
    }

    /// A deployment with fresh names on the stack at `stack` (region b's, for instance).
    pub fn on(stack: StackEnv, tenants: Vec<TestTenant>) -> anyhow::Result<Self> {
        let id = format!("t{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let dir = std::env::temp_dir().join(format!("flk-test-{id}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Deployment {
            stack,
            region: "test".to_owned(),
            topic_prefix: format!("{id}."),
            schema: id.clone(),
            id,
            partitions: 4,
            tenants,
            decision_timeout_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            dir,
            extra_toml: String::new(),
            flk_postgres_url_opt: None,
            flk_redis_urls_opt: None,
            flk_brokers_opt: None,
        })
    }

    /// The Postgres URL the `flk` processes are given.
    pub fn flk_postgres_url(&self) -> &str {
        self.flk_postgres_url_opt
            .as_deref()
            .unwrap_or(&self.stack.postgres_url)
    }

    /// The Kafka bootstrap servers the `flk` processes are given.
    pub fn flk_brokers(&self) -> &str {
        self.flk_brokers_opt
            .as_deref()
            .unwrap_or(&self.stack.brokers)
    }

    /// The Redis URLs the `flk` processes are given.
    pub fn flk_redis_urls(&self) -> &[String] {
        self.flk_redis_urls_opt
            .as_deref()
            .unwrap_or(&self.stack.redis_urls)
    }

    /// `<prefix>flk.submissions`.
    pub fn submissions_topic(&self) -> String {
        format!("{}flk.submissions", self.topic_prefix)
    }

    /// `<prefix>flk.decisions`.
    pub fn decisions_topic(&self) -> String {
        format!("{}flk.decisions", self.topic_prefix)
    }

    /// The TOML config of this deployment (gateway on a free port).
    pub fn config_toml(&self) -> String {
        let mut text = format!(
            "region = \"{}\"\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\npartitions = {}\n\
             [postgres]\nurl = \"{}\"\nschema = \"{}\"\npool_size = 4\n\
             [redis]\nurls = {:?}\nkey_prefix = \"{}\"\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\ndecision_timeout_ms = {}\nmax_body_bytes = {}\nworkers = 2\n",
            self.region,
            self.flk_brokers(),
            self.topic_prefix,
            self.partitions,
            self.flk_postgres_url(),
            self.schema,
            self.flk_redis_urls(),
            self.id,
            self.decision_timeout_ms,
            self.max_body_bytes,
        );
        text.push_str(&self.extra_toml);
        text.push('\n');
        for tenant in &self.tenants {
            text.push_str(&format!(
                "[tenants.{:?}]\nenabled = {}\n",
                tenant.name, tenant.enabled
            ));
            text.push_str(&tenant.settings_toml);
            if let Some((rate, burst)) = tenant.rate_opt {
                text.push_str(&format!(
                    "rate_per_second = {rate:?}\nrate_burst = {burst:?}\n"
                ));
            }
            if let Some(secret) = &tenant.hmac_secret_opt {
                text.push_str(&format!(
                    "[[tenants.{:?}.keys]]\nid = \"k1\"\nhmac_secret = {secret:?}\n",
                    tenant.name
                ));
            }
        }
        text
    }

    /// Writes the config file and returns its path.
    pub fn write_config(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("flk.toml");
        // Replace it atomically: a process started just before may still be reading it, and a
        // truncated file would parse as the defaults (the shared `flk.*` topics and schema).
        let temp = self
            .dir
            .join(format!("flk.toml.{:08x}.tmp", rand::random::<u32>()));
        std::fs::write(&temp, self.config_toml())?;
        std::fs::rename(&temp, &path)?;
        Ok(path)
    }

    /// A Postgres client whose `search_path` is this deployment's schema.
    pub async fn postgres(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.stack.postgres_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path = {}", self.schema))
            .await?;
        Ok(client)
    }

    /// Audit entries of `pcs_id` whose dedup result is `dedup_result` (`superseded`, ...).
    pub async fn audit_entries(&self, pcs_id: &str, dedup_result: &str) -> anyhow::Result<i64> {
        Ok(self
            .postgres()
            .await?
            .query_one(
                "SELECT count(*) FROM audit_log WHERE pcs_id = $1 AND dedup_result = $2",
                &[&pcs_id, &dedup_result],
            )
            .await?
            .get(0))
    }

    /// Drops the schema, topics and Redis keys (best effort; called at the end of a test).
    pub async fn cleanup(&self) {
        if let Ok((client, connection)) =
            tokio_postgres::connect(&self.stack.postgres_url, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            for schema in [self.schema.clone(), format!("{}_rebuild", self.schema)] {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            }
        }
        use rdkafka::admin::{AdminClient, AdminOptions};
        let admin: Result<AdminClient<rdkafka::client::DefaultClientContext>, _> =
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &self.stack.brokers)
                .create();
        if let Ok(admin) = admin {
            // Every topic of this deployment: its own, and the mirrored ones of other regions.
            let topics: Vec<String> = admin
                .inner()
                .fetch_metadata(None, std::time::Duration::from_secs(10))
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .map(|topic| topic.name().to_owned())
                        .filter(|name| name.starts_with(&self.topic_prefix))
                        .collect()
                })
                .unwrap_or_default();
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if !names.is_empty() {
                let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
            }
        }
        let cache_config =
            projections::HotCacheConfig::new(self.stack.redis_urls.clone(), self.id.clone());
        if let Ok(cache) = projections::HotCache::new(cache_config) {
            let _ = cache.flush_all_prefix().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stack's S3 store (moto), opened the way `flk serve` opens it from the same environment.
pub fn s3_objects() -> anyhow::Result<infra::objects::Objects> {
    let env = |name: &str| {
        std::env::var(name).map_err(|_| {
            anyhow::anyhow!(
                "{name} is not set: start the stack with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`"
            )
        })
    };
    let config = infra::config::ObjectStoreConfig {
        kind: infra::config::ObjectStoreKind::S3,
        endpoint_opt: Some(env("FLK_S3_ENDPOINT")?),
        bucket: env("FLK_S3_BUCKET")?,
        region: env("AWS_REGION")?,
        access_key_id_opt: Some(env("AWS_ACCESS_KEY_ID")?),
        secret_access_key_opt: Some(env("AWS_SECRET_ACCESS_KEY")?),
        ..infra::config::ObjectStoreConfig::default()
    };
    Ok(infra::objects::open(&config)?)
}
