// Package flk is the Go SDK for FLK, the service that ingests and verifies
// PCS records (Proof-of-Computation Summaries, schema fractal-lba-kakeya 0.1).
//
// The package is laid out by concern, one small file each:
//
//   - pcs.go, decode.go, decode_signed.go: the PCS record and its strict
//     decoder. The decoder is stricter than encoding/json on purpose
//     (integer-only epoch, no lone surrogates, required keys) and follows the
//     server's rules, so that a record the SDK accepts is one the server
//     accepts too, and its errors name the same offending key.
//   - canonical.go: the canonical signing payload of CONTRACT section 2. It
//     rounds and prints numbers in decimal arithmetic, the way the original
//     Python agent does, because a single differing byte breaks every signature.
//   - sign.go: HMAC-SHA256 and Ed25519 signing and constant-time verification.
//   - verify.go, dhat.go: the pure verification function of CONTRACT section 3,
//     so an agent can predict the gateway's decision before submitting.
//   - audit*.go: offline verification of the audit log's proofs: RFC 6962
//     hashing and RFC 9162 inclusion and consistency proofs (audit_merkle.go),
//     C2SP signed checkpoints (audit_note.go), the audit leaf (audit_leaf.go)
//     and whole proof bundles, checked in the order every FLK verifier uses
//     (audit.go).
//   - client*.go, retry.go: the HTTP gateway client with retries.
//   - the kafka subpackage: a producer for agents that write to Kafka
//     directly, kept apart so HTTP-only programs do not link a Kafka client.
//   - cmd/flk-sdk: sign, canonicalize and batch-sign from the command line.
//
// Nothing in the package keeps global state; every function is safe for
// concurrent use, and a Client or Producer may be shared between goroutines.
package flk
