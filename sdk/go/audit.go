package flk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ProofBundle is everything needed to check offline that a record is in the
// audit log: a signed checkpoint, the leaf bytes, the leaf's index and its
// inclusion proof. It has the JSON shape the proof API returns.
type ProofBundle struct {
	// Checkpoint is the signed checkpoint (a C2SP signed note).
	Checkpoint string `json:"checkpoint"`
	// LeafIndex is the leaf's global index.
	LeafIndex uint64 `json:"leaf_index"`
	// TreeSize is the tree size the proof is for (the checkpoint's).
	TreeSize uint64 `json:"tree_size"`
	// Entry is the standard base64 of the leaf bytes.
	Entry string `json:"entry"`
	// Inclusion holds the standard base64 of each hash of the RFC 9162
	// inclusion proof, leaf side first.
	Inclusion []string `json:"inclusion"`
}

// BundleErrorKind names the first check a proof bundle failed. The checks
// run in this order, in every FLK verifier.
type BundleErrorKind string

const (
	// BundleCheckpoint: the checkpoint is not signed by the trusted key, is
	// malformed, or is for another log than the key's.
	BundleCheckpoint BundleErrorKind = "checkpoint"
	// BundleEntry: the entry is not base64 of an audit leaf.
	BundleEntry BundleErrorKind = "entry"
	// BundleInclusion: the proof does not tie the entry to the checkpoint
	// (another tree size, a malformed proof, or a proof leading elsewhere).
	BundleInclusion BundleErrorKind = "inclusion"
	// BundleRecord: the logged entry is not the given record.
	BundleRecord BundleErrorKind = "record"
)

// BundleError is a refused proof bundle: the first failed check and why.
type BundleError struct {
	Kind BundleErrorKind
	Msg  string
}

func (e *BundleError) Error() string { return string(e.Kind) + ": " + e.Msg }

// VerifyBundle checks a proof bundle against the log's trusted key and, when
// record is not nil, against the record the caller holds. It returns the
// checkpoint and the parsed leaf, or a *BundleError naming the first check
// that failed, in this order:
//
//  1. checkpoint: the note carries a valid signature by verifier and its
//     origin is the key's log;
//  2. entry: the entry is base64 of an audit leaf (DecodeAuditLeaf);
//  3. inclusion: the bundle's tree size is the checkpoint's and the proof
//     leads from LeafHash(entry) at the leaf index to the checkpoint's root;
//  4. record (only with a record): the leaf's pcs_id is the record's and
//     its signed_digest is the hex SHA-256 of the record's canonical payload.
//
// A record that passes is the one the log decided: same id and same signed
// bytes.
func VerifyBundle(bundle *ProofBundle, verifier *NoteVerifier, record *SignedFields) (Checkpoint, *AuditLeaf, error) {
	fail := func(kind BundleErrorKind, msg string) (Checkpoint, *AuditLeaf, error) {
		return Checkpoint{}, nil, &BundleError{Kind: kind, Msg: msg}
	}
	if bundle == nil || verifier == nil {
		return fail(BundleCheckpoint, "no bundle or no verifier key")
	}
	checkpoint, err := verifier.OpenCheckpoint(bundle.Checkpoint)
	if err != nil {
		return fail(BundleCheckpoint, err.Error())
	}
	entry, err := decodeBase64(bundle.Entry)
	if err != nil {
		return fail(BundleEntry, "entry is not base64")
	}
	leaf, err := DecodeAuditLeaf(entry)
	if err != nil {
		return fail(BundleEntry, err.Error())
	}
	if bundle.TreeSize != checkpoint.Size {
		return fail(BundleInclusion, fmt.Sprintf("proof is for tree size %d but the checkpoint is for %d",
			bundle.TreeSize, checkpoint.Size))
	}
	proof, err := DecodeHashes(bundle.Inclusion)
	if err != nil {
		return fail(BundleInclusion, err.Error())
	}
	if err := VerifyInclusion(LeafHash(entry), bundle.LeafIndex, checkpoint.Size, proof, checkpoint.Root); err != nil {
		return fail(BundleInclusion, err.Error())
	}
	if record != nil {
		if leaf.PcsID == nil || *leaf.PcsID != record.PcsID {
			logged := "none"
			if leaf.PcsID != nil {
				logged = fmt.Sprintf("%q", *leaf.PcsID)
			}
			return fail(BundleRecord, fmt.Sprintf("the log holds pcs_id %s, the record is %q", logged, record.PcsID))
		}
		digest := sha256.Sum256(record.CanonicalPayload())
		if leaf.SignedDigest == nil || *leaf.SignedDigest != hex.EncodeToString(digest[:]) {
			return fail(BundleRecord,
				"the logged signed digest is not the record's (a different record under this pcs_id)")
		}
	}
	return checkpoint, leaf, nil
}
