//! Store errors, classified by what the caller must do.
//!
//! What the HTTP gateway answers for each is decided in `gateway/src/http/status.rs`, not here.
//! The gateway meets these only on reads (lookups and reading a decision back); `apply_batch` and
//! its fencing run in the projector, which never answers HTTP.
//!
//! | variant | caller does |
//! |---|---|
//! | [`StoreError::Unavailable`] | retry later (same batch, same claim) |
//! | [`StoreError::Fenced`] | stop: another owner took the partition; drop the batch, re-claim on next assignment |
//! | [`StoreError::InvalidInput`] | fix the caller (bad schema name, offsets out of order) |
//! | [`StoreError::Corrupt`] | stop and page someone: stored data is not what this code writes |
//! | [`StoreError::Fatal`] | stop: an unexpected database error (a bug or a refused statement) |

use thiserror::Error;
use tokio_postgres::error::SqlState;

/// Why a Postgres projection operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Postgres could not be reached, the pool timed out, or the transaction lost a transient race
    /// (deadlock, serialization failure) too many times. Nothing was committed; retrying is safe.
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    /// The partition is owned by a newer claim (a rebalance happened); nothing was committed.
    #[error(
        "fenced: {consumer} lost {topic}[{partition}] (claimed epoch {claimed_epoch}, current {current_epoch_opt:?})"
    )]
    Fenced {
        /// Consumer group of the projection.
        consumer: String,
        /// Decisions topic.
        topic: String,
        /// Decisions partition.
        partition: i32,
        /// Epoch the caller holds.
        claimed_epoch: i64,
        /// Epoch in the database (`None` when the partition was never claimed).
        current_epoch_opt: Option<i64>,
    },
    /// A singleton's lease (the demoter's) was taken over by another process; nothing was
    /// committed, and this process must stop doing that job.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The caller passed something this store refuses (a bad schema name, a batch out of order).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Stored data does not have the shape this code writes (a wrong-length digest, bad JSON, an
    /// edited migration).
    #[error("projection store corrupt: {0}")]
    Corrupt(String),
    /// Any other database error, including statements the database refuses on purpose (I8).
    #[error("postgres error: {0}")]
    Fatal(String),
}

impl StoreError {
    /// True when the same call may succeed later (the caller should back off and retry).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// True for a transient race inside one transaction that a fresh attempt resolves.
    pub(crate) fn is_transient_conflict(error: &tokio_postgres::Error) -> bool {
        matches!(
            error.code(),
            Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::UNIQUE_VIOLATION
        )
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => error.to_string(),
        };
        match error.code() {
            None => {
                // No SQLSTATE: either the client could not convert a value (our bug or bad stored
                // data; retrying will not help) or the socket, TLS or protocol failed (the server
                // may be fine later). tokio-postgres does not expose its error kind, only text.
                if message.starts_with("error deserializing column")
                    || message.starts_with("invalid column")
                {
                    StoreError::Corrupt(message)
                } else if message.starts_with("error serializing parameter")
                    || message.starts_with("unexpected number of rows")
                    || message.starts_with("expected ")
                {
                    StoreError::Fatal(message)
                } else {
                    StoreError::Unavailable(message)
                }
            }
            Some(code) => {
                let class = &code.code()[..2.min(code.code().len())];
                // 08 connection exception, 53 insufficient resources, 57 operator intervention
                // (shutdown, cancel), 40 transaction rollback (deadlock, serialization).
                if matches!(class, "08" | "53" | "57" | "40") {
                    StoreError::Unavailable(message)
                } else {
                    StoreError::Fatal(message)
                }
            }
        }
    }
}

/// Failure of one attempt of a transaction: a raw Postgres error (which may be a transient race
/// worth another attempt) or an already classified store error.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// From the database or the driver.
    Postgres(tokio_postgres::Error),
    /// Decided by this crate (fenced, corrupt, invalid input).
    Store(StoreError),
}

impl From<tokio_postgres::Error> for AttemptError {
    fn from(error: tokio_postgres::Error) -> Self {
        AttemptError::Postgres(error)
    }
}

impl From<StoreError> for AttemptError {
    fn from(error: StoreError) -> Self {
        AttemptError::Store(error)
    }
}

impl From<deadpool_postgres::PoolError> for AttemptError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        AttemptError::Store(error.into())
    }
}

impl From<AttemptError> for StoreError {
    fn from(error: AttemptError) -> Self {
        match error {
            AttemptError::Postgres(error) => error.into(),
            AttemptError::Store(error) => error,
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => StoreError::from(error),
            other => StoreError::Unavailable(format!("connection pool: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(StoreError::Unavailable("down".into()).is_retryable());
        assert!(
            !StoreError::Fenced {
                consumer: "c".into(),
                topic: "t".into(),
                partition: 0,
                claimed_epoch: 1,
                current_epoch_opt: Some(2),
            }
            .is_retryable()
        );
        assert!(!StoreError::Corrupt("x".into()).is_retryable());
        assert!(!StoreError::Fatal("x".into()).is_retryable());
        assert!(!StoreError::InvalidInput("x".into()).is_retryable());
    }
}
