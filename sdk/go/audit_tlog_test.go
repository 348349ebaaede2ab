package flk

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// These tests hold FLK's audit proofs to an implementation nobody on the
// project wrote: golang.org/x/mod/sumdb/tlog (the Go checksum database's
// RFC 6962 log) and golang.org/x/mod/sumdb/note (C2SP signed notes). In the
// vector tests tlog's checker judges proofs made by the Rust prover and
// tlog's prover must produce the very same proofs; in the random-tree test
// this SDK's verifier judges proofs made by tlog's prover.

// tlogTree is a tlog tree kept in memory: the stored hashes in tlog's index
// order, written by tlog.StoredHashes.
type tlogTree struct {
	stored []tlog.Hash
	n      int64
}

func (tr *tlogTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(tr.stored)) {
			return nil, fmt.Errorf("stored hash %d not written (have %d)", x, len(tr.stored))
		}
		out[i] = tr.stored[x]
	}
	return out, nil
}

func (tr *tlogTree) add(t testing.TB, data []byte) {
	hashes, err := tlog.StoredHashes(tr.n, data, tr)
	if err != nil {
		t.Fatal(err)
	}
	if want := tlog.StoredHashIndex(0, tr.n); want != int64(len(tr.stored)) {
		t.Fatalf("record %d: stored hashes go at %d, have %d", tr.n, want, len(tr.stored))
	}
	tr.stored = append(tr.stored, hashes...)
	tr.n++
}

func (tr *tlogTree) root(t testing.TB, size uint64) Hash {
	h, err := tlog.TreeHash(int64(size), tr)
	if err != nil {
		t.Fatal(err)
	}
	return Hash(h)
}

func toTlog(hs []Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		out[i] = tlog.Hash(h)
	}
	return out
}

func fromTlog(hs []tlog.Hash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}

// vectorTree is the vectors' tree of 1000 leaves "flk test leaf <i>",
// built by tlog.
func vectorTree(t *testing.T) *tlogTree {
	t.Helper()
	tr := &tlogTree{}
	for _, e := range testLeaves(1000) {
		tr.add(t, e)
	}
	return tr
}

func TestTlogHashingAgrees(t *testing.T) {
	v := loadAuditVectors(t)
	for _, c := range v.Hashing.Leaves {
		entry := mustB64(t, c.Entry)
		if Hash(tlog.RecordHash(entry)) != mustHash(t, c.LeafHash) || LeafHash(entry) != Hash(tlog.RecordHash(entry)) {
			t.Errorf("leaf %q: tlog.RecordHash %s, vector %s", c.Entry, tlog.RecordHash(entry), c.LeafHash)
		}
	}
	n := v.Hashing.Node
	left, right := mustHash(t, n.Left), mustHash(t, n.Right)
	if Hash(tlog.NodeHash(tlog.Hash(left), tlog.Hash(right))) != mustHash(t, n.Hash) {
		t.Errorf("tlog.NodeHash disagrees with the vector")
	}
	empty, err := tlog.TreeHash(0, &tlogTree{})
	if err != nil || Hash(empty) != mustHash(t, v.Hashing.EmptyRoot) {
		t.Errorf("tlog empty tree %s (%v), vector %s", empty, err, v.Hashing.EmptyRoot)
	}
}

func TestTlogVectorRoots(t *testing.T) {
	v := loadAuditVectors(t)
	tr := vectorTree(t)
	for _, c := range v.Roots {
		if got := tr.root(t, c.Size); got != mustHash(t, c.Root) {
			t.Errorf("tlog.TreeHash(%d) = %s, vector %s", c.Size, got, c.Root)
		}
	}
}

func TestTlogVectorInclusion(t *testing.T) {
	v := loadAuditVectors(t)
	tr := vectorTree(t)
	for i, c := range v.Inclusion {
		t.Run(fmt.Sprintf("%d:%s/index=%d/size=%d", i, c.Name, c.Index, c.Size), func(t *testing.T) {
			proof := toTlog(mustHashes(t, c.Proof))
			leaf := tlog.RecordHash(mustB64(t, c.Entry))
			err := tlog.CheckRecord(proof, int64(c.Size), tlog.Hash(mustHash(t, c.Root)), int64(c.Index), leaf)
			if (err == nil) != c.Valid {
				t.Fatalf("tlog.CheckRecord: %v, want valid=%v", err, c.Valid)
			}
			if !c.Valid {
				return
			}
			// tlog's prover makes the same proof as the Rust prover.
			want, err := tlog.ProveRecord(int64(c.Size), int64(c.Index), tr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(want, proof) {
				t.Fatalf("tlog.ProveRecord = %v, vector %v", want, c.Proof)
			}
		})
	}
}

func TestTlogVectorConsistency(t *testing.T) {
	v := loadAuditVectors(t)
	tr := vectorTree(t)
	for i, c := range v.Consistency {
		t.Run(fmt.Sprintf("%d:%s/%d->%d", i, c.Name, c.OldSize, c.NewSize), func(t *testing.T) {
			if c.OldSize == 0 {
				t.Skip("tlog has no proofs from the empty tree")
			}
			proof := toTlog(mustHashes(t, c.Proof))
			err := tlog.CheckTree(proof, int64(c.NewSize), tlog.Hash(mustHash(t, c.NewRoot)),
				int64(c.OldSize), tlog.Hash(mustHash(t, c.OldRoot)))
			if (err == nil) != c.Valid {
				t.Fatalf("tlog.CheckTree: %v, want valid=%v", err, c.Valid)
			}
			if !c.Valid {
				return
			}
			want, err := tlog.ProveTree(int64(c.NewSize), int64(c.OldSize), tr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(want, proof) {
				t.Fatalf("tlog.ProveTree = %v, vector %v", want, c.Proof)
			}
		})
	}
}

func TestTlogNoteOpensVectorCheckpoints(t *testing.T) {
	v := loadAuditVectors(t)
	theirs, err := note.NewVerifier(v.Checkpoints.VerifierKey)
	if err != nil {
		t.Fatalf("note.NewVerifier refuses the vectors' key: %v", err)
	}
	ours, err := ParseVerifierKey(v.Checkpoints.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Checkpoints.Cases {
		t.Run(c.Name, func(t *testing.T) {
			// note.Open checks signatures only; the origin line naming the key's log is
			// checkpoint semantics, checked here as our verifier does.
			n, err := note.Open([]byte(c.Note), note.VerifierList(theirs))
			valid := err == nil
			if valid {
				cp, perr := ParseCheckpoint(n.Text)
				valid = perr == nil && cp.Origin == theirs.Name()
			}
			if valid != c.Valid {
				t.Fatalf("note.Open: %v (origin checked), want valid=%v", err, c.Valid)
			}
			if !valid {
				return
			}
			body, err := ours.Open(c.Note)
			if err != nil || body != n.Text {
				t.Fatalf("our text %q (%v), note's %q", body, err, n.Text)
			}
			cp, err := ParseCheckpoint(n.Text)
			if err != nil || cp.Size != c.Size || cp.Root != mustHash(t, c.Root) || cp.Origin != theirs.Name() {
				t.Fatalf("checkpoint in note.Open's text: %+v %v", cp, err)
			}
		})
	}
}

func TestTlogVectorBundles(t *testing.T) {
	v := loadAuditVectors(t)
	theirs, err := note.NewVerifier(v.Bundles.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Bundles.Cases {
		t.Run(c.Name, func(t *testing.T) {
			n, err := note.Open([]byte(c.Bundle.Checkpoint), note.VerifierList(theirs))
			if c.Expect == string(BundleCheckpoint) {
				if err == nil {
					t.Fatal("note.Open accepted a checkpoint the vector refuses")
				}
				return
			}
			if err != nil {
				t.Fatalf("note.Open: %v", err)
			}
			if c.Expect == string(BundleEntry) {
				return
			}
			cp, err := ParseCheckpoint(n.Text)
			if err != nil {
				t.Fatal(err)
			}
			entry := mustB64(t, c.Bundle.Entry)
			proof, herr := DecodeHashes(c.Bundle.Inclusion)
			if herr != nil || c.Bundle.TreeSize != cp.Size {
				// Refused before any hashing: nothing for tlog to judge.
				if c.Expect != string(BundleInclusion) {
					t.Fatalf("undecodable proof or size mismatch, but the vector expects %s", c.Expect)
				}
				return
			}
			err = tlog.CheckRecord(toTlog(proof), int64(cp.Size), tlog.Hash(cp.Root),
				int64(c.Bundle.LeafIndex), tlog.RecordHash(entry))
			if included := c.Expect != string(BundleInclusion); (err == nil) != included {
				t.Fatalf("tlog.CheckRecord: %v, vector expects %s", err, c.Expect)
			}
		})
	}
}

// TestTlogNoteInterop signs with x/mod's note package and opens with ours,
// and the other way round.
func TestTlogNoteInterop(t *testing.T) {
	const origin = "flk.test/interop"
	rng := rand.NewChaCha8([32]byte{'f', 'l', 'k'})
	skey, vkey, err := note.GenerateKey(rng, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	witnessSkey, _, err := note.GenerateKey(rng, "witness.example")
	if err != nil {
		t.Fatal(err)
	}
	witness, err := note.NewSigner(witnessSkey)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Origin: origin, Size: 4242, Root: LeafHash([]byte("interop"))}
	msg, err := note.Sign(&note.Note{Text: cp.Body()}, witness, signer)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := ParseVerifierKey(vkey)
	if err != nil {
		t.Fatalf("ParseVerifierKey(%q): %v", vkey, err)
	}
	if got, err := ours.OpenCheckpoint(string(msg)); err != nil || got != cp {
		t.Fatalf("x/mod-signed checkpoint: %+v %v\n%s", got, err, msg)
	}
	// Tampering after x/mod signed is caught.
	if _, err := ours.OpenCheckpoint(strings.Replace(string(msg), "\n4242\n", "\n4243\n", 1)); err == nil {
		t.Fatal("tampered x/mod-signed checkpoint accepted")
	}

	// Our key strings are x/mod's, and notes signed our way open in x/mod.
	ts := newTestSigner(origin, 3)
	wantKey, err := note.NewEd25519VerifierKey(origin, ts.public())
	if err != nil {
		t.Fatal(err)
	}
	if ts.verifierKey() != wantKey {
		t.Fatalf("verifier key %s, x/mod writes %s", ts.verifierKey(), wantKey)
	}
	theirs, err := note.NewVerifier(wantKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(ts.sign(cp.Body())), note.VerifierList(theirs))
	if err != nil || n.Text != cp.Body() {
		t.Fatalf("note.Open of our note: %v", err)
	}
}

// TestTlogRandomTrees is the property test: in trees of random sizes up to
// 100,000 leaves built with tlog.StoredHashes, every proof tlog's prover
// makes is accepted by this SDK's verifier, a wrong leaf, root or proof hash
// is refused, and TreeRoot agrees with tlog.TreeHash.
func TestTlogRandomTrees(t *testing.T) {
	const maxSize = 100_000
	tr := &tlogTree{}
	leaves := make([]Hash, 0, maxSize)
	for i := range uint64(maxSize) {
		data := binary.BigEndian.AppendUint64(nil, i)
		tr.add(t, data)
		leaves = append(leaves, LeafHash(data))
	}
	rng := rand.New(rand.NewPCG(6962, 9162))
	sizes := []uint64{1, 2, 3, 65536, 65537, maxSize}
	for range 8 {
		sizes = append(sizes, 1+rng.Uint64N(maxSize))
	}
	for _, size := range sizes {
		index := rng.Uint64N(size)
		old := rng.Uint64N(size + 1)
		t.Run(fmt.Sprintf("size=%d/index=%d/old=%d", size, index, old), func(t *testing.T) {
			root := tr.root(t, size)
			if got := TreeRoot(leaves[:size]); got != root {
				t.Fatalf("TreeRoot %s, tlog.TreeHash %s", got, root)
			}

			rp, err := tlog.ProveRecord(int64(size), int64(index), tr)
			if err != nil {
				t.Fatal(err)
			}
			proof := fromTlog(rp)
			if len(proof) > bits.Len64(size) {
				t.Errorf("inclusion proof of %d hashes in a tree of %d", len(proof), size)
			}
			if err := VerifyInclusion(leaves[index], index, size, proof, root); err != nil {
				t.Fatalf("VerifyInclusion refuses tlog's proof: %v", err)
			}
			other := leaves[(index+1)%uint64(len(leaves))]
			if err := VerifyInclusion(other, index, size, proof, root); err == nil {
				t.Error("VerifyInclusion accepted another leaf")
			}
			if size > 1 {
				if err := VerifyInclusion(leaves[index], (index+1)%size, size, proof, root); err == nil {
					t.Error("VerifyInclusion accepted another index")
				}
				bad := slices.Clone(proof)
				bad[rng.IntN(len(bad))][rng.IntN(32)] ^= 1 << rng.IntN(8)
				if err := VerifyInclusion(leaves[index], index, size, bad, root); err == nil {
					t.Error("VerifyInclusion accepted a flipped proof bit")
				}
				if err := VerifyInclusion(leaves[index], index, size, proof[:len(proof)-1], root); err == nil {
					t.Error("VerifyInclusion accepted a truncated proof")
				}
			}

			oldRoot := tr.root(t, old)
			if got := TreeRoot(leaves[:old]); got != oldRoot {
				t.Fatalf("TreeRoot(%d) %s, tlog.TreeHash %s", old, got, oldRoot)
			}
			if old == 0 {
				if err := VerifyConsistency(0, size, oldRoot, root, nil); err != nil {
					t.Fatalf("from the empty tree: %v", err)
				}
				return
			}
			tp, err := tlog.ProveTree(int64(size), int64(old), tr)
			if err != nil {
				t.Fatal(err)
			}
			cproof := fromTlog(tp)
			if err := VerifyConsistency(old, size, oldRoot, root, cproof); err != nil {
				t.Fatalf("VerifyConsistency refuses tlog's proof: %v", err)
			}
			if old < size {
				wrong := NodeHash(oldRoot, oldRoot)
				if VerifyConsistency(old, size, wrong, root, cproof) == nil ||
					VerifyConsistency(old, size, oldRoot, wrong, cproof) == nil ||
					VerifyConsistency(old, size, oldRoot, root, cproof[:len(cproof)-1]) == nil {
					t.Error("VerifyConsistency accepted a wrong root or a truncated proof")
				}
				// And tlog's checker agrees with ours on the proof.
				if err := tlog.CheckTree(tp, int64(size), tlog.Hash(root), int64(old), tlog.Hash(oldRoot)); err != nil {
					t.Errorf("tlog.CheckTree refuses its own proof: %v", err)
				}
			}
		})
	}
}
