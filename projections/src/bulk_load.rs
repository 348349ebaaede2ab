//! [`BulkLoad`]: a fresh rebuild schema readied for the replay's COPY ([`crate::bulk_copy`]).
//!
//! While the schema is private to the replay, the primary keys, unique constraints and secondary
//! indexes of the two tables it fills, `audit_log` and `dedup`, are dropped, and built once the
//! rows are in: a sort per index instead of a B-tree insert per row and per index. Each index
//! builds on a connection of its own, all of a table's at once (`CREATE INDEX` takes a share
//! lock, so builds of one table do not wait for each other), then its constraints are put back on
//! the built indexes (`ADD CONSTRAINT ... USING INDEX`, no second scan). A table can finish while
//! another is still being copied. Building the keys at the end also checks the fold: a repeated
//! (partition, seq), source or dedup key fails the load.
//!
//! Check constraints and NOT NULL stay: they cost little per copied row, and adding a check back
//! scans the whole table under an exclusive lock.

use tokio_postgres::Config;

use crate::error::StoreError;
use crate::rebuild::connect;

/// Sort memory of each index build. Less is faster here: a sort that fits in memory sorts one
/// large array of tuples with a cache miss per comparison, while a small budget sorts runs that
/// fit the CPU caches and merges them from the page cache. Building the text-keyed indexes of
/// 1,000,000 rows took 2.3 s with 128 MiB, 2.0 s with 64 MiB and 1.5 s with 16 MiB (and 8 MiB);
/// the integer-keyed ones were the same with each (docs/benchmarks.md, "Performance round 3,
/// third part"). The builds run at once, so this is also what they hold together, per index.
const BUILD_MAINTENANCE_WORK_MEM: &str = "16MB";

/// What a bulk load set aside, per table.
#[derive(Debug)]
#[must_use = "finish the bulk load, or the rebuild lacks its keys and indexes"]
pub struct BulkLoad {
    /// The audit log's keys and indexes.
    pub audit_log: TableLoad,
    /// The dedup table's.
    pub dedup: TableLoad,
}

/// The keys and indexes of one table a bulk load dropped, as `pg_get_indexdef` printed them.
#[derive(Debug)]
#[must_use = "finish the table's load, or it lacks its keys and indexes"]
pub struct TableLoad {
    /// Table name (unqualified: connections have `search_path` set to the schema).
    table: &'static str,
    /// `CREATE [UNIQUE] INDEX` statements, one per dropped index.
    index_definitions: Vec<String>,
    /// Primary key and unique constraints to put back on their indexes: (constraint and index
    /// name, `PRIMARY KEY` or `UNIQUE`).
    constraints: Vec<(String, &'static str)>,
}

impl BulkLoad {
    /// Drops the keys and indexes of `audit_log` and `dedup`, remembering their definitions. For
    /// a schema no one else reads or writes (a fresh rebuild).
    pub(crate) async fn begin(client: &tokio_postgres::Client) -> Result<Self, StoreError> {
        Ok(BulkLoad {
            audit_log: TableLoad::begin(client, "audit_log").await?,
            dedup: TableLoad::begin(client, "dedup").await?,
        })
    }

    /// Builds both tables' keys and indexes again.
    pub(crate) async fn finish(self, pg_config: &Config) -> Result<(), StoreError> {
        futures::try_join!(
            self.audit_log.finish(pg_config),
            self.dedup.finish(pg_config)
        )?;
        Ok(())
    }
}

impl TableLoad {
    async fn begin(
        client: &tokio_postgres::Client,
        table: &'static str,
    ) -> Result<Self, StoreError> {
        let rows = client
            .query(
                "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.contype::text \
                 FROM pg_index x \
                 JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_class t ON t.oid = x.indrelid \
                 LEFT JOIN pg_constraint c ON c.conrelid = t.oid AND c.conindid = x.indexrelid \
                 WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace \
                 ORDER BY i.relname",
                &[&table],
            )
            .await?;
        let mut load = TableLoad {
            table,
            index_definitions: Vec::with_capacity(rows.len()),
            constraints: Vec::new(),
        };
        let mut drops = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            load.index_definitions.push(row.try_get(1)?);
            let constraint_opt: Option<String> = row.try_get(2)?;
            match constraint_opt.as_deref() {
                None => drops.push(format!("DROP INDEX \"{name}\";")),
                Some(kind @ ("p" | "u")) => {
                    drops.push(format!("ALTER TABLE {table} DROP CONSTRAINT \"{name}\";"));
                    let kind = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                    load.constraints.push((name, kind));
                }
                Some(other) => {
                    // Only keys and exclusion constraints own indexes; the schema has none of
                    // the latter.
                    return Err(StoreError::Fatal(format!(
                        "{table}: index {name} backs a constraint of kind {other:?}, \
                         which a bulk load cannot rebuild"
                    )));
                }
            }
        }
        client.batch_execute(&drops.concat()).await?;
        Ok(load)
    }

    /// Builds the table's indexes, each on a connection of its own and all at once, then puts
    /// its constraints back on them. A row that breaks a key fails here.
    pub(crate) async fn finish(self, pg_config: &Config) -> Result<(), StoreError> {
        let builds = self.index_definitions.iter().map(|definition| async move {
            let mut client = connect(pg_config).await?;
            // A failed build rolls back when the transaction drops.
            let transaction = client.transaction().await?;
            transaction
                .batch_execute(&format!(
                    "SET LOCAL maintenance_work_mem = '{BUILD_MAINTENANCE_WORK_MEM}';\n\
                     SET LOCAL max_parallel_maintenance_workers = 0;\n\
                     {definition};"
                ))
                .await?;
            transaction.commit().await?;
            Ok::<(), StoreError>(())
        });
        futures::future::try_join_all(builds).await?;
        if !self.constraints.is_empty() {
            let adds: Vec<String> = self
                .constraints
                .iter()
                .map(|(name, kind)| {
                    format!("ADD CONSTRAINT \"{name}\" {kind} USING INDEX \"{name}\"")
                })
                .collect();
            connect(pg_config)
                .await?
                .batch_execute(&format!("ALTER TABLE {} {};", self.table, adds.join(", ")))
                .await?;
        }
        Ok(())
    }
}
