//! [`ProjectionStore`]: the pool, the schema it lives in, and the public operations (each one
//! delegating to the module that owns it).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use events::{DecisionEvent, SourceCoordinates};
use tokio_postgres::NoTls;

use crate::bulk_load::{BulkLoad, TableLoad};
use crate::error::StoreError;
use crate::migrations::{migrate, validate_schema_name};
use crate::model::{Applied, ChainReport, Claim, StoredOutcome, SwapReport, TenantTtl};
use crate::notify::{DecidedListener, RingListener};
use crate::replay_fold::ReplayFold;
use crate::{apply, audit, bulk_copy, dedup, notify, offsets, rebuild, state_hash};

/// Tuning for a [`ProjectionStore`]; `Default` is the local default.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections.
    pub pool_size: usize,
    /// How long to wait for a pooled connection before [`StoreError::Unavailable`].
    pub wait_timeout: Duration,
    /// How long to wait for a new connection before [`StoreError::Unavailable`].
    pub connect_timeout: Duration,
    /// Dedup TTL per tenant. A rebuild must use the same TTLs as the live store, or I6 fails.
    pub dedup_ttl: TenantTtl,
    /// Capacity of a [`DecidedListener`]'s queue of coordinates.
    pub listener_capacity: usize,
    /// Postgres ends a session that sits this long inside a transaction without sending
    /// anything. A process frozen mid-transaction (SIGSTOP, a long pause, a hung VM) would
    /// otherwise keep its row locks and block the partition's next owner until it wakes; this
    /// way its transaction is rolled back and, when it wakes, its epoch is fenced.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 8,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            dedup_ttl: TenantTtl::default(),
            listener_capacity: 65_536,
            idle_in_transaction_timeout: Duration::from_secs(15),
        }
    }
}

/// The Postgres read models of one schema: offsets, dedup, audit log.
#[derive(Debug, Clone)]
pub struct ProjectionStore {
    /// Pool whose connections all start with `search_path` set to `schema`.
    pool: Pool,
    /// Connection settings, kept for the dedicated listener connection.
    pg_config: tokio_postgres::Config,
    /// The schema the tables live in.
    schema: String,
    /// Options the store was opened with.
    options: StoreOptions,
}

/// Name of the NOTIFY channel of ring changes in a schema: `<schema>_ring`.
pub fn ring_channel(schema: &str) -> String {
    format!("{schema}_ring")
}

/// Name of the NOTIFY channel of a schema: `<schema>_decided`.
pub fn decided_channel(schema: &str) -> String {
    format!("{schema}_decided")
}

impl ProjectionStore {
    /// Connects with default options; see [`ProjectionStore::connect_with`].
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, schema, StoreOptions::default()).await
    }

    /// Connects to `url`, creates `schema` if missing and applies pending migrations in it. Every
    /// pooled connection sets `search_path` to `schema` at startup, so statements are unqualified.
    pub async fn connect_with(
        url: &str,
        schema: &str,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url, schema, options)?;
        let mut client = store.client().await?;
        migrate(&mut client, schema).await?;
        Ok(store)
    }

    /// Builds the pool without connecting and without migrating: the first operation connects,
    /// and fails as [`StoreError::Unavailable`] while Postgres is down. For tests of callers that
    /// must behave when the store is unreachable; a serving process uses
    /// [`ProjectionStore::connect_with`], which also migrates.
    pub fn connect_lazy(
        url: &str,
        schema: &str,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        validate_schema_name(schema)?;
        let mut pg_config = parse_url(url)?;
        // Server options given in the URL (`?options=-c%20default_tablespace%3Dfast`) come
        // first; ours follow and win where both set the same one.
        let from_url = pg_config
            .get_options()
            .map(|given| format!("{given} "))
            .unwrap_or_default();
        pg_config
            .connect_timeout(options.connect_timeout)
            .application_name("flk-projections")
            // Custom plans: a statement prepared while a fresh schema's tables are empty would
            // otherwise keep a generic plan with sequential scans (docs/benchmarks.md, fix 2).
            .options(format!(
                "{from_url}-c search_path={schema} -c plan_cache_mode=force_custom_plan \
                 -c idle_in_transaction_session_timeout={}",
                options.idle_in_transaction_timeout.as_millis()
            ));
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::InvalidInput(format!("pool: {error}")))?;
        Ok(ProjectionStore {
            pool,
            pg_config,
            schema: schema.to_owned(),
            options,
        })
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The NOTIFY channel this store's commits signal on.
    pub fn channel(&self) -> String {
        decided_channel(&self.schema)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// What the fold in [`crate::apply`] needs from this store.
    fn apply_target(&self) -> apply::Target<'_> {
        apply::Target {
            pool: &self.pool,
            dedup_ttl: &self.options.dedup_ttl,
            channel: self.channel(),
        }
    }

    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Claims a decisions partition for `consumer`: bumps its owner epoch (creating the row at
    /// offset 0 if missing). Every older claim is fenced from now on.
    pub async fn claim_partition(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Claim, StoreError> {
        let client = self.client().await?;
        offsets::claim(&client, consumer, topic, partition).await
    }

    /// The stored offsets row, without claiming (for status pages and tests).
    pub async fn partition_offsets(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Claim>, StoreError> {
        let client = self.client().await?;
        offsets::read(&client, consumer, topic, partition).await
    }

    /// Folds a batch of decision events of one decisions partition in ONE transaction (I4); see
    /// the [`crate::apply`] module for the rules. `batch` holds `(decisions offset, event)` in
    /// strictly ascending offset order. Returns one [`Applied`] per event at or after the stored
    /// `next_offset`, in batch order; events before it were applied earlier and are skipped.
    pub async fn apply_batch(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
        claim_epoch: i64,
        batch: &[(i64, DecisionEvent)],
    ) -> Result<Vec<Applied>, StoreError> {
        let batch = apply::PartitionBatch {
            partition,
            claim_epoch,
            events: batch,
        };
        let mut answers =
            apply::apply_batches(&self.apply_target(), consumer, topic, &[batch]).await?;
        Ok(answers.pop().unwrap_or_default())
    }

    /// [`Self::apply_batch`] for several partitions in ONE transaction: one commit and one set of
    /// round trips for all of them (each keeps its own offsets row, fencing and audit chain).
    /// Partitions must be distinct. Returns the answers of each batch, in the order given; a
    /// fenced partition fails the whole transaction.
    pub async fn apply_batches(
        &self,
        consumer: &str,
        topic: &str,
        batches: &[apply::PartitionBatch<'_>],
    ) -> Result<Vec<Vec<Applied>>, StoreError> {
        apply::apply_batches(&self.apply_target(), consumer, topic, batches).await
    }

    /// The answer recorded for a submission, from its audit entry (for a gateway that missed the
    /// notification). `None` when it has not been decided yet.
    pub async fn result_for_source(
        &self,
        source: &SourceCoordinates,
    ) -> Result<Option<Applied>, StoreError> {
        let client = self.client().await?;
        audit::result_for_source(&client, source).await
    }

    /// Opens a dedicated connection that LISTENs on [`ProjectionStore::channel`] and yields the
    /// source coordinates of every committed decision.
    pub async fn listen_decided(&self) -> Result<DecidedListener, StoreError> {
        notify::listen(
            &self.pg_config,
            &self.channel(),
            self.options.listener_capacity,
        )
        .await
    }

    /// Opens a dedicated connection that LISTENs for ring changes (see [`RingListener`]).
    pub async fn listen_ring(&self) -> Result<RingListener, StoreError> {
        notify::listen_ring(&self.pg_config, &ring_channel(&self.schema)).await
    }

    /// The dedup row of (tenant, `pcs_id`), scoped by tenant (I7).
    pub async fn lookup(
        &self,
        tenant: &str,
        pcs_id: &str,
    ) -> Result<Option<StoredOutcome>, StoreError> {
        let client = self.client().await?;
        dedup::lookup(&client, tenant, pcs_id).await
    }

    /// Hex SHA-256 over every deterministic column of the dedup and audit tables (I6); see
    /// [`crate::state_hash`].
    pub async fn state_hash(&self) -> Result<String, StoreError> {
        let mut client = self.client().await?;
        state_hash::state_hash(&mut client).await
    }

    /// Decisions partitions that have audit entries.
    pub async fn audit_partitions(&self) -> Result<Vec<i32>, StoreError> {
        let client = self.client().await?;
        audit::partitions(&client).await
    }

    /// Up to `limit` audit entries of a partition from `from_seq` on, in chain order (for the
    /// anchorer and audit queries).
    pub async fn audit_entries(
        &self,
        partition: i32,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<audit::AuditEntry>, StoreError> {
        let client = self.client().await?;
        audit::entries(&client, partition, from_seq, limit).await
    }

    /// Recomputes the hash chain of one partition's audit log.
    pub async fn verify_audit_chain(&self, partition: i32) -> Result<ChainReport, StoreError> {
        let mut client = self.client().await?;
        audit::verify_chain(&mut client, partition).await
    }

    /// Readies a fresh rebuild schema for a bulk replay; see [`crate::bulk_load`].
    pub async fn begin_bulk_load(&self) -> Result<BulkLoad, StoreError> {
        let client = self.client().await?;
        BulkLoad::begin(&client).await
    }

    /// Builds the keys and indexes [`Self::begin_bulk_load`] dropped, both tables at once.
    pub async fn finish_bulk_load(&self, bulk_load: BulkLoad) -> Result<(), StoreError> {
        bulk_load.finish(&self.pg_config).await
    }

    /// Builds one table's keys and indexes (it may finish while another table is being copied).
    pub async fn finish_table_load(&self, table_load: TableLoad) -> Result<(), StoreError> {
        table_load.finish(&self.pg_config).await
    }

    /// Starts a binary COPY of audit entries on a connection of its own (a rebuild under a bulk
    /// load; see [`crate::bulk_copy`]).
    pub async fn copy_audit(&self) -> Result<bulk_copy::AuditCopy, StoreError> {
        bulk_copy::AuditCopy::start(rebuild::connect(&self.pg_config).await?).await
    }

    /// Starts a binary COPY of the dedup row versions a replay's fold hands out, on a connection
    /// of its own (a rebuild under a bulk load; see [`crate::bulk_copy`]).
    pub async fn copy_dedup(&self) -> Result<bulk_copy::DedupCopy, StoreError> {
        bulk_copy::DedupCopy::start(rebuild::connect(&self.pg_config).await?).await
    }

    /// Deletes the copied dedup rows the fold replaced later (before the key is built). Returns
    /// the rows deleted.
    pub async fn delete_replaced_dedup_rows(&self, fold: &ReplayFold) -> Result<u64, StoreError> {
        let client = self.client().await?;
        bulk_copy::delete_replaced(&client, fold).await
    }

    /// Sets `next_offset` of claimed partitions, `(partition, next offset)`, without an owner
    /// check (a rebuild no one else writes; [`ReplayFold::next_offsets`]).
    pub async fn set_next_offsets(
        &self,
        consumer: &str,
        topic: &str,
        next_offsets: &[(i32, i64)],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        offsets::advance(&transaction, consumer, topic, next_offsets).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The conventional schema a rebuild of `live_schema` is replayed into: `<live>_rebuild`.
    pub fn rebuild_schema_name(live_schema: &str) -> String {
        format!("{live_schema}_rebuild")
    }

    /// Makes `rebuild_schema` the live one, in one transaction; see [`crate::rebuild`].
    pub async fn swap_in(
        url: &str,
        rebuild_schema: &str,
        live_schema: &str,
    ) -> Result<SwapReport, StoreError> {
        rebuild::swap_in(&parse_url(url)?, rebuild_schema, live_schema).await
    }

    /// Drops a schema and everything in it (an old live schema after inspection, a test schema).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        rebuild::drop_schema(&parse_url(url)?, schema).await
    }
}

pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|error| StoreError::InvalidInput(format!("postgres url: {error}")))
}
