//! Read models folded from decision events: the dedup table (first write wins per tenant and
//! `pcs_id`), the append-only hash-chained audit log, consumed offsets (all in one Postgres
//! transaction per batch), and the Redis hot cache filled only after commit.
//!
//! No actix here: projections are plain async functions the actors call.
