package flk

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Schema is the only schema name a PCS may carry.
const Schema = "fractal-lba-kakeya"

// SchemaVersion is the PCS version this SDK writes.
const SchemaVersion = "0.1"

// Regime names, as claimed in a PCS and recomputed by Verify.
const (
	RegimeSticky    = "sticky"
	RegimeMixed     = "mixed"
	RegimeNonSticky = "non_sticky"
)

// PCS is a Proof-of-Computation Summary (CONTRACT section 1).
//
// Optional keys are pointers or zero values so that encoding a decoded PCS
// does not invent keys the agent never sent: "absent" and "zero" differ for
// the server (an absent r is signed as 0.0, but an absent ft is not degraded).
type PCS struct {
	// PcsID must equal PcsID(MerkleRoot, Epoch, ShardID).
	PcsID string `json:"pcs_id"`
	// Schema must be "fractal-lba-kakeya".
	Schema string `json:"schema"`
	// Version is the record version ("0.1").
	Version string `json:"version"`
	// ShardID is the agent's shard.
	ShardID string `json:"shard_id"`
	// Epoch is a non-negative integer; a JSON float is malformed.
	Epoch int64 `json:"epoch"`
	// Attempt is the agent's send attempt, informational.
	Attempt *int64 `json:"attempt,omitempty"`
	// SentAt is an RFC 3339 time with a zone, or "" when absent.
	SentAt string `json:"sent_at,omitempty"`
	// Seed is the agent's random seed, informational.
	Seed *int64 `json:"seed,omitempty"`
	// Scales are the positive grid scales, in the order used for regression.
	Scales []int64 `json:"scales"`
	// NJ maps decimal(scale) to the number of occupied voxels at that scale.
	NJ map[string]int64 `json:"N_j"`
	// CohStar is the claimed coherence.
	CohStar float64 `json:"coh_star"`
	// VStar is the best projection direction, informational.
	VStar []float64 `json:"v_star,omitempty"`
	// DHat is the claimed fractal dimension estimate.
	DHat float64 `json:"D_hat"`
	// R is the compressibility ratio; nil when absent (signed as 0.0).
	R *float64 `json:"r,omitempty"`
	// Regime is the claimed regime: sticky, mixed or non_sticky.
	Regime string `json:"regime"`
	// Budget is the claimed budget.
	Budget float64 `json:"budget"`
	// MerkleRoot is the agent's Merkle root.
	MerkleRoot string `json:"merkle_root"`
	// Sig is the standard base64 signature, "" when unsigned.
	Sig string `json:"sig,omitempty"`
	// FT carries the agent's fault-tolerance report; nil when absent.
	FT *FT `json:"ft,omitempty"`
}

// FT is the agent's fault-tolerance report. Only Degraded affects
// verification (it escalates the record).
type FT struct {
	// OutboxSeq is the agent's outbox sequence number.
	OutboxSeq *int64 `json:"outbox_seq,omitempty"`
	// Degraded reports that the agent ran in a degraded mode.
	Degraded bool `json:"degraded"`
	// Fallbacks names the fallbacks the agent used.
	Fallbacks []string `json:"fallbacks,omitempty"`
	// ClockSkewMs is the agent's measured clock skew.
	ClockSkewMs *int64 `json:"clock_skew_ms,omitempty"`
}

// PcsID returns the record id of CONTRACT section 1: lowercase hex SHA-256 of
// merkle_root|epoch|shard_id. Deriving the id from content is what makes a
// resend of the same summary a duplicate rather than a new record.
func PcsID(merkleRoot string, epoch int64, shardID string) string {
	h := sha256.New()
	h.Write([]byte(merkleRoot))
	h.Write([]byte{'|'})
	h.Write(strconv.AppendInt(nil, epoch, 10))
	h.Write([]byte{'|'})
	h.Write([]byte(shardID))
	return hex.EncodeToString(h.Sum(nil))
}

// RValue returns r, or 0.0 when the record has none; the contract signs and
// budgets an absent r as 0.0.
func (p *PCS) RValue() float64 {
	if p.R == nil {
		return 0
	}
	return *p.R
}

// SignedFields extracts the eight signed fields.
func (p *PCS) SignedFields() SignedFields {
	return SignedFields{
		PcsID:      p.PcsID,
		MerkleRoot: p.MerkleRoot,
		Epoch:      p.Epoch,
		ShardID:    p.ShardID,
		DHat:       p.DHat,
		CohStar:    p.CohStar,
		R:          p.RValue(),
		Budget:     p.Budget,
	}
}

// CanonicalPayload returns the bytes a signature covers.
func (p *PCS) CanonicalPayload() []byte {
	return p.SignedFields().CanonicalPayload()
}
