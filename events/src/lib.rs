//! The pure core of FLK: everything every other crate and every SDK must agree on, byte for byte.
//!
//! No I/O lives here (no tokio, actix, Kafka, Postgres or Redis; CI checks the dependency tree).
//!
//! Layout:
//! - [`pcs`]: the PCS record and its strict decoder (CONTRACT section 1);
//! - [`json_object`]: the typed, key-naming JSON accessors and [`DecodeError`] both decoders use;
//! - [`decimal`]: round9, Python-`repr` float printing and `%.4f`, the decimal views the contract pins;
//! - [`canonical`]: the 8-field signing payload and `pcs_id` derivation (CONTRACT section 2);
//! - [`signing`]: HMAC-SHA256, Ed25519 and legacy pre-hash signatures;
//! - [`verify`]: the verification function and per-tenant parameters (CONTRACT section 3);
//! - [`decide`]: parse, tenant, signature, verify: the shard's pure decision function;
//! - [`outcome`]: [`OutcomeClass`], the closed set of decision classes with stable codes (the core
//!   never chooses HTTP statuses; the gateway maps classes to them);
//! - [`envelope`]: the versioned binary envelope of decision events;
//! - [`heartbeat`]: the replication heartbeat record (lag between regions);
//! - [`replication_checkpoint`]: how far a replicator got, kept in the target region's cluster;
//! - [`merkle`]: RFC 6962 hashing, the append frontier, proof planning and proof verification;
//! - [`checkpoint`]: C2SP signed checkpoints (signed notes with Ed25519);
//! - [`audit_leaf`]: the bytes of one audit Merkle leaf;
//! - [`audit_proof`]: proof bundles and the order in which every verifier checks them;
//! - [`audit_task`]: async audit tasks, dead tasks and the retry schedule;
//! - [`cold_segment`]: the cold tier's compressed segments and their verifiable manifests.
//! - [`trace_parent`]: the W3C `traceparent` every hop carries (untrusted, so parsed strictly).
//!
//! Invariant: every function here is deterministic; the same bytes and parameters give the same
//! outcome on every machine, which is what makes rebuilding projections by replay possible.

pub mod audit_leaf;
pub mod audit_proof;
pub mod audit_task;
pub mod canonical;
pub mod checkpoint;
pub mod cold_segment;
pub mod decide;
pub mod decimal;
pub mod envelope;
pub mod heartbeat;
pub mod json_object;
pub mod merkle;
pub mod outcome;
pub mod pcs;
pub mod replication_checkpoint;
pub mod signing;
pub mod trace_parent;
pub mod verify;

pub use canonical::{SignedFields, derive_pcs_id};
pub use decide::{Decision, TenantKey, TenantPolicy, Verdict, decide};
pub use envelope::{DecisionEvent, EnvelopeError, SourceCoordinates, SubmissionSource};
pub use outcome::OutcomeClass;
pub use pcs::{DecodeError, Pcs};
pub use signing::{Ed25519Signer, SignatureError, VerifyingSecret, sign_hmac, sign_hmac_prehash};
pub use verify::{Outcome, VerifyParams, verify};
