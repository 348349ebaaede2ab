package flk

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Hash is a SHA-256 hash in the audit log's Merkle tree (RFC 6962): a leaf
// hash, an inner node or a root.
type Hash [sha256.Size]byte

// String returns the standard base64 of h, the form checkpoints and proof
// bundles use.
func (h Hash) String() string {
	return base64.StdEncoding.EncodeToString(h[:])
}

// EmptyRoot returns the root of the empty tree, SHA-256("").
func EmptyRoot() Hash {
	return sha256.Sum256(nil)
}

// LeafHash returns SHA-256(0x00 || entry), the hash of one log entry as
// served (the bytes are hashed as they are, never re-serialized).
func LeafHash(entry []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0x00})
	h.Write(entry)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash returns SHA-256(0x01 || left || right), an inner node.
func NodeHash(left, right Hash) Hash {
	var buf [1 + 2*sha256.Size]byte
	buf[0] = 0x01
	copy(buf[1:], left[:])
	copy(buf[1+sha256.Size:], right[:])
	return sha256.Sum256(buf[:])
}

// TreeRoot returns the RFC 6962 root (MTH) of a tree whose leaves have the
// given hashes, in order: what a checkpoint of len(leaves) entries commits
// to. It needs memory for O(log n) hashes beyond the input.
func TreeRoot(leaves []Hash) Hash {
	if len(leaves) == 0 {
		return EmptyRoot()
	}
	// The right edge of the tree so far: complete subtrees, largest first,
	// each with its level; appending a leaf merges equal levels (the binary
	// counter that RFC 6962's left-heavy split produces).
	type peak struct {
		level int
		hash  Hash
	}
	var peaks []peak
	for _, leaf := range leaves {
		p := peak{0, leaf}
		for len(peaks) > 0 && peaks[len(peaks)-1].level == p.level {
			left := peaks[len(peaks)-1]
			peaks = peaks[:len(peaks)-1]
			p = peak{p.level + 1, NodeHash(left.hash, p.hash)}
		}
		peaks = append(peaks, p)
	}
	root := peaks[len(peaks)-1].hash
	for i := len(peaks) - 2; i >= 0; i-- {
		root = NodeHash(peaks[i].hash, root)
	}
	return root
}

// ProofError says why an inclusion or consistency proof was refused.
type ProofError struct {
	// OutOfRange marks arguments no tree can satisfy (a leaf index not below
	// the size, an old size above the new one); otherwise the proof does not
	// lead to the expected root or has the wrong length.
	OutOfRange bool
	// Msg says what is wrong.
	Msg string
}

func (e *ProofError) Error() string { return e.Msg }

func proofMismatch(msg string) error { return &ProofError{Msg: msg} }

// VerifyInclusion checks that leaf (a LeafHash) is leaf number index of the
// tree of size leaves whose root is root, given the RFC 9162 inclusion proof
// (audit path, leaf side first). It follows RFC 9162 section 2.1.3.2 and
// returns nil or a *ProofError.
func VerifyInclusion(leaf Hash, index, size uint64, proof []Hash, root Hash) error {
	if index >= size {
		return &ProofError{OutOfRange: true, Msg: fmt.Sprintf("leaf index %d is not in a tree of size %d", index, size)}
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return proofMismatch("inclusion proof is longer than the tree is deep")
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return proofMismatch("inclusion proof is shorter than the tree is deep")
	}
	if r != root {
		return proofMismatch("inclusion proof does not lead to the root")
	}
	return nil
}

// VerifyConsistency checks that the tree of newSize leaves with root newRoot
// extends the tree of oldSize leaves with root oldRoot, given the RFC 9162
// consistency proof. It follows RFC 9162 section 2.1.4.2 and returns nil or
// a *ProofError. Equal sizes need an empty proof and equal roots; every tree
// extends the empty one, with an empty proof.
func VerifyConsistency(oldSize, newSize uint64, oldRoot, newRoot Hash, proof []Hash) error {
	if oldSize > newSize {
		return &ProofError{OutOfRange: true, Msg: fmt.Sprintf("old size %d is larger than new size %d", oldSize, newSize)}
	}
	if oldSize == newSize {
		if len(proof) != 0 {
			return proofMismatch("equal sizes need an empty consistency proof")
		}
		if oldRoot != newRoot {
			return proofMismatch("two different roots for the same tree size")
		}
		return nil
	}
	if oldSize == 0 {
		if len(proof) != 0 {
			return proofMismatch("a proof from the empty tree must be empty")
		}
		return nil
	}
	if len(proof) == 0 {
		return proofMismatch("consistency proof is empty")
	}
	// When the old tree is a complete subtree, its root is the proof's
	// implicit first element.
	seed, rest := proof[0], proof[1:]
	if oldSize&(oldSize-1) == 0 {
		seed, rest = oldRoot, proof
	}
	fn, sn := oldSize-1, newSize-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := seed, seed
	for _, c := range rest {
		if sn == 0 {
			return proofMismatch("consistency proof is longer than expected")
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return proofMismatch("consistency proof is shorter than expected")
	}
	if fr != oldRoot {
		return proofMismatch("consistency proof does not lead to the old root")
	}
	if sr != newRoot {
		return proofMismatch("consistency proof does not lead to the new root")
	}
	return nil
}

// DecodeHashes reads a list of standard-base64 hashes (a proof as the proof
// API and bundles carry it). Each must be the canonical encoding of exactly
// 32 bytes.
func DecodeHashes(list []string) ([]Hash, error) {
	out := make([]Hash, len(list))
	for i, text := range list {
		h, err := decodeHash(text)
		if err != nil {
			return nil, fmt.Errorf("hash %d is not 32 bytes of base64", i)
		}
		out[i] = h
	}
	return out, nil
}

func decodeHash(text string) (Hash, error) {
	raw, err := decodeBase64(text)
	if err != nil {
		return Hash{}, err
	}
	if len(raw) != sha256.Size {
		return Hash{}, fmt.Errorf("%d bytes, not %d", len(raw), sha256.Size)
	}
	return Hash(raw), nil
}

// decodeBase64 reads standard base64 with padding and accepts only the
// canonical encoding: encoding/base64 skips CR and LF even in strict mode,
// so the text must also re-encode to itself. This is what the Rust
// side's base64 engine accepts.
func decodeBase64(text string) ([]byte, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(raw) != text {
		return nil, fmt.Errorf("not canonical base64")
	}
	return raw, nil
}
