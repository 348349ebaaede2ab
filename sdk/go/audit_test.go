package flk

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// auditVectors is tests/vectors/audit-vectors.json (see the "Audit log
// vectors" section of tests/vectors/README.md). Hashes and entries are
// standard base64.
type auditVectors struct {
	Format      int    `json:"format"`
	Description string `json:"description"`
	LeavesNote  string `json:"leaves"`
	Hashing     struct {
		EmptyRoot string `json:"empty_root"`
		Leaves    []struct {
			Entry    string `json:"entry"`
			LeafHash string `json:"leaf_hash"`
		} `json:"leaves"`
		Node struct {
			Left  string `json:"left"`
			Right string `json:"right"`
			Hash  string `json:"hash"`
		} `json:"node"`
	} `json:"hashing"`
	Roots []struct {
		Size uint64 `json:"size"`
		Root string `json:"root"`
	} `json:"roots"`
	Inclusion []struct {
		Name  string   `json:"name"`
		Index uint64   `json:"index"`
		Size  uint64   `json:"size"`
		Entry string   `json:"entry"`
		Proof []string `json:"proof"`
		Root  string   `json:"root"`
		Valid bool     `json:"valid"`
	} `json:"inclusion"`
	Consistency []struct {
		Name    string   `json:"name"`
		OldSize uint64   `json:"old_size"`
		NewSize uint64   `json:"new_size"`
		OldRoot string   `json:"old_root"`
		NewRoot string   `json:"new_root"`
		Proof   []string `json:"proof"`
		Valid   bool     `json:"valid"`
	} `json:"consistency"`
	Checkpoints struct {
		Origin      string `json:"origin"`
		VerifierKey string `json:"verifier_key"`
		Cases       []struct {
			Name  string `json:"name"`
			Note  string `json:"note"`
			Valid bool   `json:"valid"`
			Size  uint64 `json:"size"`
			Root  string `json:"root"`
		} `json:"cases"`
	} `json:"checkpoints"`
	Bundles struct {
		VerifierKey   string `json:"verifier_key"`
		RecordPayload string `json:"record_payload"`
		Cases         []struct {
			Name   string          `json:"name"`
			Bundle ProofBundle     `json:"bundle"`
			Record json.RawMessage `json:"record"`
			Expect string          `json:"expect"`
		} `json:"cases"`
	} `json:"bundles"`
}

func loadAuditVectors(t *testing.T) *auditVectors {
	t.Helper()
	data := readPinnedVectors(t, "audit-vectors.json")
	// Every field must be one this suite reads: a new kind of expectation
	// in the file must not pass unnoticed.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v auditVectors
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode audit vectors: %v", err)
	}
	if v.Format != 1 {
		t.Fatalf("audit vector format %d, this suite reads format 1", v.Format)
	}
	if len(v.Roots) == 0 || len(v.Inclusion) == 0 || len(v.Consistency) == 0 ||
		len(v.Checkpoints.Cases) == 0 || len(v.Bundles.Cases) == 0 || len(v.Hashing.Leaves) == 0 {
		t.Fatal("an audit vector section is empty")
	}
	return &v
}

func mustHash(t *testing.T, text string) Hash {
	t.Helper()
	h, err := decodeHash(text)
	if err != nil {
		t.Fatalf("hash %q: %v", text, err)
	}
	return h
}

func mustHashes(t *testing.T, list []string) []Hash {
	t.Helper()
	hs, err := DecodeHashes(list)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// testLeaves returns the entries of the vectors' trees: leaf i is the UTF-8
// text "flk test leaf <i>".
func testLeaves(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "flk test leaf %d", i)
	}
	return out
}

// mth is RFC 6962's MTH straight from the definition, an oracle for TreeRoot.
func mth(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return NodeHash(mth(leaves[:k]), mth(leaves[k:]))
}

func TestAuditVectorsHashing(t *testing.T) {
	v := loadAuditVectors(t)
	if got := EmptyRoot(); got != mustHash(t, v.Hashing.EmptyRoot) {
		t.Errorf("empty root %s, want %s", got, v.Hashing.EmptyRoot)
	}
	if got := TreeRoot(nil); got != EmptyRoot() {
		t.Errorf("TreeRoot(nil) = %s", got)
	}
	for _, c := range v.Hashing.Leaves {
		if got := LeafHash(mustB64(t, c.Entry)); got != mustHash(t, c.LeafHash) {
			t.Errorf("LeafHash(%q) = %s, want %s", c.Entry, got, c.LeafHash)
		}
	}
	n := v.Hashing.Node
	if got := NodeHash(mustHash(t, n.Left), mustHash(t, n.Right)); got != mustHash(t, n.Hash) {
		t.Errorf("NodeHash = %s, want %s", got, n.Hash)
	}
}

func TestAuditVectorsRoots(t *testing.T) {
	v := loadAuditVectors(t)
	var hashes []Hash
	for _, e := range testLeaves(1000) {
		hashes = append(hashes, LeafHash(e))
	}
	for _, c := range v.Roots {
		if c.Size > uint64(len(hashes)) {
			t.Fatalf("root case of size %d beyond the %d leaves built", c.Size, len(hashes))
		}
		want := mustHash(t, c.Root)
		if got := TreeRoot(hashes[:c.Size]); got != want {
			t.Errorf("TreeRoot of %d leaves = %s, want %s", c.Size, got, c.Root)
		}
		if got := mth(hashes[:c.Size]); got != want {
			t.Errorf("MTH of %d leaves = %s, want %s", c.Size, got, c.Root)
		}
	}
	// TreeRoot against the definition for every size up to 300.
	for size := range 300 {
		if TreeRoot(hashes[:size]) != mth(hashes[:size]) {
			t.Fatalf("TreeRoot differs from MTH at size %d", size)
		}
	}
}

func TestAuditVectorsInclusion(t *testing.T) {
	v := loadAuditVectors(t)
	for i, c := range v.Inclusion {
		name := fmt.Sprintf("%d:%s/index=%d/size=%d", i, c.Name, c.Index, c.Size)
		t.Run(name, func(t *testing.T) {
			err := VerifyInclusion(LeafHash(mustB64(t, c.Entry)), c.Index, c.Size, mustHashes(t, c.Proof), mustHash(t, c.Root))
			if (err == nil) != c.Valid {
				t.Fatalf("VerifyInclusion: %v, want valid=%v", err, c.Valid)
			}
			var pe *ProofError
			if err != nil && !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ProofError", err)
			}
			if c.Index >= c.Size && (pe == nil || !pe.OutOfRange) {
				t.Errorf("index %d of size %d: want an out-of-range error, got %v", c.Index, c.Size, err)
			}
		})
	}
}

func TestAuditVectorsConsistency(t *testing.T) {
	v := loadAuditVectors(t)
	for i, c := range v.Consistency {
		name := fmt.Sprintf("%d:%s/%d->%d", i, c.Name, c.OldSize, c.NewSize)
		t.Run(name, func(t *testing.T) {
			err := VerifyConsistency(c.OldSize, c.NewSize, mustHash(t, c.OldRoot), mustHash(t, c.NewRoot), mustHashes(t, c.Proof))
			if (err == nil) != c.Valid {
				t.Fatalf("VerifyConsistency: %v, want valid=%v", err, c.Valid)
			}
			var pe *ProofError
			if err != nil && !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ProofError", err)
			}
		})
	}
}

func TestAuditVectorsCheckpoints(t *testing.T) {
	v := loadAuditVectors(t)
	verifier, err := ParseVerifierKey(v.Checkpoints.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if verifier.Name() != v.Checkpoints.Origin {
		t.Fatalf("key name %q, origin %q", verifier.Name(), v.Checkpoints.Origin)
	}
	for _, c := range v.Checkpoints.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cp, err := verifier.OpenCheckpoint(c.Note)
			if (err == nil) != c.Valid {
				t.Fatalf("OpenCheckpoint: %v, want valid=%v", err, c.Valid)
			}
			if err != nil {
				var ce *CheckpointError
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not a *CheckpointError", err)
				}
				return
			}
			if cp.Origin != v.Checkpoints.Origin || cp.Size != c.Size || cp.Root != mustHash(t, c.Root) {
				t.Errorf("checkpoint %+v, want size %d root %s", cp, c.Size, c.Root)
			}
			if !strings.HasPrefix(c.Note, cp.Body()+"\n") {
				t.Errorf("Body() %q does not start the note", cp.Body())
			}
		})
	}
}

func TestAuditVectorsBundles(t *testing.T) {
	v := loadAuditVectors(t)
	verifier, err := ParseVerifierKey(v.Bundles.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range v.Bundles.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var record *SignedFields
			if len(c.Record) > 0 && string(c.Record) != "null" {
				f, err := DecodeSignedFields(c.Record)
				if err != nil {
					t.Fatalf("record: %v", err)
				}
				record = &f
				if i == 0 && string(f.CanonicalPayload()) != v.Bundles.RecordPayload {
					t.Fatalf("record payload\n got %s\nwant %s", f.CanonicalPayload(), v.Bundles.RecordPayload)
				}
			}
			bundle := c.Bundle
			cp, leaf, err := VerifyBundle(&bundle, verifier, record)
			got := "ok"
			if err != nil {
				var be *BundleError
				if !errors.As(err, &be) {
					t.Fatalf("error %T is not a *BundleError", err)
				}
				got = string(be.Kind)
				if !strings.HasPrefix(err.Error(), got+": ") {
					t.Errorf("error %q does not start with its kind", err)
				}
			}
			if got != c.Expect {
				t.Fatalf("VerifyBundle: %v, want %s", err, c.Expect)
			}
			if err == nil {
				if cp.Size != bundle.TreeSize || leaf == nil || leaf.V != AuditLeafVersion {
					t.Errorf("checkpoint %+v leaf %+v", cp, leaf)
				}
				if record != nil && (leaf.PcsID == nil || *leaf.PcsID != record.PcsID) {
					t.Errorf("leaf pcs_id %v, record %s", leaf.PcsID, record.PcsID)
				}
			}
		})
	}
}

// validBundle returns the vectors' first bundle case (valid, with a record).
func validBundle(t *testing.T) (ProofBundle, *NoteVerifier, *SignedFields) {
	t.Helper()
	v := loadAuditVectors(t)
	c := v.Bundles.Cases[0]
	if c.Expect != "ok" {
		t.Fatalf("first bundle case is %q, want a valid one", c.Expect)
	}
	verifier, err := ParseVerifierKey(v.Bundles.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeSignedFields(c.Record)
	if err != nil {
		t.Fatal(err)
	}
	return c.Bundle, verifier, &f
}

func TestAuditBundleMalformed(t *testing.T) {
	good, verifier, record := validBundle(t)
	cases := []struct {
		name string
		edit func(b *ProofBundle)
		want BundleErrorKind
	}{
		{"empty checkpoint", func(b *ProofBundle) { b.Checkpoint = "" }, BundleCheckpoint},
		{"entry not base64", func(b *ProofBundle) { b.Entry = "not base64!" }, BundleEntry},
		{"entry unpadded", func(b *ProofBundle) { b.Entry = strings.TrimRight(b.Entry, "=") + "\n" }, BundleEntry},
		{"entry empty", func(b *ProofBundle) { b.Entry = "" }, BundleEntry},
		{"entry is a JSON array", func(b *ProofBundle) { b.Entry = base64.StdEncoding.EncodeToString([]byte("[1]")) }, BundleEntry},
		{"tree size differs", func(b *ProofBundle) { b.TreeSize++ }, BundleInclusion},
		{"index beyond size", func(b *ProofBundle) { b.LeafIndex = b.TreeSize }, BundleInclusion},
		{"index huge", func(b *ProofBundle) { b.LeafIndex = 1<<64 - 1 }, BundleInclusion},
		{"proof hash not base64", func(b *ProofBundle) { b.Inclusion = []string{"???"} }, BundleInclusion},
		{"proof hash 31 bytes", func(b *ProofBundle) {
			b.Inclusion = append([]string{base64.StdEncoding.EncodeToString(make([]byte, 31))}, b.Inclusion[1:]...)
		}, BundleInclusion},
		{"proof hash 33 bytes", func(b *ProofBundle) {
			b.Inclusion = append([]string{base64.StdEncoding.EncodeToString(make([]byte, 33))}, b.Inclusion[1:]...)
		}, BundleInclusion},
		{"proof too long", func(b *ProofBundle) { b.Inclusion = append(b.Inclusion, b.Inclusion[0]) }, BundleInclusion},
		{"proof nil", func(b *ProofBundle) { b.Inclusion = nil }, BundleInclusion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := good
			b.Inclusion = append([]string(nil), good.Inclusion...)
			c.edit(&b)
			_, _, err := VerifyBundle(&b, verifier, record)
			var be *BundleError
			if !errors.As(err, &be) || be.Kind != c.want {
				t.Fatalf("got %v, want kind %s", err, c.want)
			}
		})
	}
	if _, _, err := VerifyBundle(nil, verifier, nil); err == nil {
		t.Error("nil bundle accepted")
	}
	if _, _, err := VerifyBundle(&good, nil, nil); err == nil {
		t.Error("nil verifier accepted")
	}
	// A record whose pcs_id the log does not hold.
	other := *record
	other.PcsID = "another-id"
	_, _, err := VerifyBundle(&good, verifier, &other)
	var be *BundleError
	if !errors.As(err, &be) || be.Kind != BundleRecord || !strings.Contains(err.Error(), "another-id") {
		t.Fatalf("other pcs_id: %v", err)
	}
	// The bundle as JSON, the way the proof API serves it.
	text, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	var back ProofBundle
	if err := json.Unmarshal(text, &back); err != nil {
		t.Fatal(err)
	}
	if _, leaf, err := VerifyBundle(&back, verifier, record); err != nil || leaf.Tenant == "" {
		t.Fatalf("round-tripped bundle: %v", err)
	}
}

func TestAuditLeafDecoding(t *testing.T) {
	good, _, _ := validBundle(t)
	entry := string(mustB64(t, good.Entry))
	leaf, err := DecodeAuditLeaf([]byte(entry))
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Tenant != "alpha" || leaf.V != 1 || leaf.PcsID == nil || leaf.SignedDigest == nil ||
		leaf.Source.Topic == "" || leaf.DecidedAtMs == 0 {
		t.Fatalf("leaf %+v", leaf)
	}
	// pcs_id and signed_digest may be null or absent; nothing else may.
	for _, ok := range []string{
		strings.Replace(entry, `"pcs_id":"`+*leaf.PcsID+`"`, `"pcs_id":null`, 1),
		strings.Replace(entry, `"signed_digest":"`+*leaf.SignedDigest+`",`, ``, 1),
		" \n" + entry + "\n ",
	} {
		if _, err := DecodeAuditLeaf([]byte(ok)); err != nil {
			t.Errorf("refused %s: %v", ok, err)
		}
	}
	bad := map[string]string{
		"not JSON":           `not json`,
		"array":              `[1,2]`,
		"string":             `"leaf"`,
		"unknown key":        strings.Replace(entry, `"v":1`, `"v":1,"extra":0`, 1),
		"repeated key":       strings.Replace(entry, `"v":1`, `"v":1,"v":1`, 1),
		"missing tenant":     strings.Replace(entry, `"tenant":"alpha",`, ``, 1),
		"version 2":          strings.Replace(entry, `"v":1`, `"v":2`, 1),
		"version -1":         strings.Replace(entry, `"v":1`, `"v":-1`, 1),
		"version 1.0":        strings.Replace(entry, `"v":1`, `"v":1.0`, 1),
		"seq float":          strings.Replace(entry, `"seq":0`, `"seq":1e0`, 1),
		"seq -0":             strings.Replace(entry, `"seq":0`, `"seq":-0`, 1),
		"seq too large":      strings.Replace(entry, `"seq":0`, `"seq":9223372036854775808`, 1),
		"partition too big":  strings.Replace(entry, `"partition":2,"pcs_id"`, `"partition":2147483648,"pcs_id"`, 1),
		"tenant null":        strings.Replace(entry, `"tenant":"alpha"`, `"tenant":null`, 1),
		"tenant number":      strings.Replace(entry, `"tenant":"alpha"`, `"tenant":1`, 1),
		"pcs_id number":      strings.Replace(entry, `"pcs_id":"`+*leaf.PcsID+`"`, `"pcs_id":7`, 1),
		"source unknown key": strings.Replace(entry, `"offset":0}`, `"offset":0,"x":1}`, 1),
		"source missing key": strings.Replace(entry, `,"offset":0}`, `}`, 1),
		"source not object":  strings.Replace(entry, `"source":{"topic":"flk.submissions","partition":2,"offset":0}`, `"source":"x"`, 1),
		"lone surrogate":     strings.Replace(entry, `"tenant":"alpha"`, `"tenant":"\ud800"`, 1),
		"invalid UTF-8":      strings.Replace(entry, `"tenant":"alpha"`, "\"tenant\":\"\xff\"", 1),
		"trailing data":      entry + "{}",
	}
	for name, text := range bad {
		if text == entry {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := DecodeAuditLeaf([]byte(text)); err == nil {
			t.Errorf("%s: accepted %s", name, text)
		} else if !strings.HasPrefix(err.Error(), "leaf") {
			t.Errorf("%s: error %q does not say it is about the leaf", name, err)
		}
	}
}

func TestAuditDecodeHashes(t *testing.T) {
	h := LeafHash([]byte("x"))
	good := h.String()
	if got, err := DecodeHashes([]string{good, good}); err != nil || len(got) != 2 || got[1] != h {
		t.Fatalf("DecodeHashes: %v %v", got, err)
	}
	if got, err := DecodeHashes(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v %v", got, err)
	}
	for _, bad := range []string{
		"",
		"not base64",
		strings.TrimRight(good, "="), // unpadded
		good[:20] + "\n" + good[20:], // a newline the standard decoder would skip
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		good[:42] + "B=", // non-zero trailing bits
		base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)),
	} {
		_, err := DecodeHashes([]string{good, bad})
		if err == nil || !strings.Contains(err.Error(), "hash 1 is not 32 bytes of base64") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestAuditProofArguments(t *testing.T) {
	var leaves []Hash
	for _, e := range testLeaves(8) {
		leaves = append(leaves, LeafHash(e))
	}
	root := TreeRoot(leaves)
	for _, c := range []struct {
		index, size uint64
		outOfRange  bool
	}{{8, 8, true}, {0, 0, true}, {1<<64 - 1, 8, true}, {0, 1<<64 - 1, false}, {7, 1, true}} {
		err := VerifyInclusion(leaves[0], c.index, c.size, nil, root)
		var pe *ProofError
		if !errors.As(err, &pe) || pe.OutOfRange != c.outOfRange {
			t.Errorf("inclusion %d/%d: %v", c.index, c.size, err)
		}
	}
	// A single-leaf tree: the leaf is the root and the proof is empty.
	if err := VerifyInclusion(leaves[0], 0, 1, nil, leaves[0]); err != nil {
		t.Errorf("single leaf: %v", err)
	}
	if err := VerifyInclusion(leaves[0], 0, 1, []Hash{leaves[1]}, leaves[0]); err == nil {
		t.Error("single leaf with a proof accepted")
	}
	// A subtree's hash is not the root of the bigger tree: the proof must
	// have exactly the tree's depth even when the hashes happen to match.
	pair := NodeHash(leaves[0], leaves[1])
	if err := VerifyInclusion(leaves[0], 0, 2, nil, leaves[0]); err == nil {
		t.Error("proof shorter than the tree accepted")
	}
	if err := VerifyInclusion(leaves[0], 0, 4, []Hash{leaves[1]}, pair); err == nil {
		t.Error("proof to an inner node accepted as a root")
	}
	if err := VerifyInclusion(leaves[0], 0, 2, []Hash{leaves[1], leaves[2]}, NodeHash(leaves[2], pair)); err == nil {
		t.Error("proof longer than the tree accepted")
	}
	if err := VerifyConsistency(2, 8, pair, TreeRoot(leaves[:4]), []Hash{NodeHash(leaves[2], leaves[3])}); err == nil {
		t.Error("consistency proof shorter than expected accepted")
	}
	if err := VerifyConsistency(2, 4, pair, TreeRoot(leaves[:4]), []Hash{NodeHash(leaves[2], leaves[3]), root}); err == nil {
		t.Error("consistency proof longer than expected accepted")
	}
	// Consistency edge rules.
	if err := VerifyConsistency(0, 8, Hash{}, root, nil); err != nil {
		t.Errorf("from the empty tree: %v", err)
	}
	if err := VerifyConsistency(0, 8, Hash{}, root, []Hash{root}); err == nil {
		t.Error("non-empty proof from the empty tree accepted")
	}
	if err := VerifyConsistency(0, 0, EmptyRoot(), EmptyRoot(), nil); err != nil {
		t.Errorf("empty to empty: %v", err)
	}
	if err := VerifyConsistency(8, 8, root, root, []Hash{root}); err == nil {
		t.Error("equal sizes with a proof accepted")
	}
	var pe *ProofError
	if err := VerifyConsistency(9, 8, root, root, nil); !errors.As(err, &pe) || !pe.OutOfRange {
		t.Errorf("old > new: %v", err)
	}
	if err := VerifyConsistency(3, 8, root, root, nil); err == nil {
		t.Error("empty proof between different sizes accepted")
	}
	if err := VerifyConsistency(4, 1<<64-1, TreeRoot(leaves[:4]), root, []Hash{root}); err == nil {
		t.Error("huge new size accepted")
	}
}

func TestAuditVerifierKeyMalformed(t *testing.T) {
	v := loadAuditVectors(t)
	key := v.Checkpoints.VerifierKey
	name, rest, _ := strings.Cut(key, "+")
	hashHex, keyB64, _ := strings.Cut(rest, "+")
	raw := mustB64(t, keyB64)
	reencode := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	// Accepted variants: surrounding whitespace, upper-case key hash.
	for _, ok := range []string{" " + key + "\n", name + "+" + strings.ToUpper(hashHex) + "+" + keyB64} {
		if _, err := ParseVerifierKey(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	// A point that is not on the curve: y = 2 has no x.
	offCurve := make([]byte, 32)
	offCurve[0] = 2
	if ed25519Decodes(offCurve) {
		t.Fatal("y=2 should not decode; pick another witness")
	}
	offKey := newTestKey(name, append([]byte{1}, offCurve...))
	bad := map[string]string{
		"empty":              "",
		"no plus":            "no-plus-signs",
		"two parts":          name + "+" + hashHex,
		"empty name":         "+" + hashHex + "+" + keyB64,
		"space in name":      "a b+" + hashHex + "+" + keyB64,
		"control in name":    "a\x01b+" + hashHex + "+" + keyB64,
		"hash mismatch":      name + "+00000000+" + keyB64,
		"hash too long":      name + "+0" + hashHex + "+" + keyB64,
		"key not base64":     name + "+" + hashHex + "+!!!!",
		"key with a newline": name + "+" + hashHex + "+" + keyB64[:20] + "\n" + keyB64[20:],
		"key with padding":   name + "+" + hashHex + "+" + keyB64 + "=",
		"key empty":          name + "+" + hashHex + "+",
		"not Ed25519":        newTestKey(name, append([]byte{2}, raw[1:]...)),
		"public key short":   newTestKey(name, raw[:32]),
		"public key long":    newTestKey(name, append(raw, 0)),
		"key not on curve":   offKey,
		"bare algorithm":     newTestKey(name, []byte{1}),
		"bare key, no alg":   name + "+" + hashHex + "+" + reencode(raw[1:]),
		"name with newline":  "a\nb+" + hashHex + "+" + keyB64,
		"plus in name":       "a+b+" + hashHex + "+" + keyB64,
	}
	for what, k := range bad {
		_, err := ParseVerifierKey(k)
		var ce *CheckpointError
		if !errors.As(err, &ce) || ce.Kind != CheckpointKey {
			t.Errorf("%s: %q gave %v", what, k, err)
		}
	}
}

// newTestKey writes a verifier key for name around raw (algorithm byte and
// public key) with the correct key hash, so only raw can be at fault.
func newTestKey(name string, raw []byte) string {
	var h [4]byte
	if len(raw) > 0 {
		h = noteKeyHash(name, raw[1:])
	}
	return fmt.Sprintf("%s+%x+%s", name, h, base64.StdEncoding.EncodeToString(raw))
}

// testSigner signs notes the way the log does (an independent writer lives
// in the x/mod cross-checks).
type testSigner struct {
	name string
	priv ed25519.PrivateKey
}

func newTestSigner(name string, seedByte byte) testSigner {
	seed := bytes.Repeat([]byte{seedByte}, ed25519.SeedSize)
	return testSigner{name: name, priv: ed25519.NewKeyFromSeed(seed)}
}

func (s testSigner) public() []byte { return s.priv.Public().(ed25519.PublicKey) }

func (s testSigner) verifierKey() string {
	return newTestKey(s.name, append([]byte{1}, s.public()...))
}

func (s testSigner) line(body string) string {
	h := noteKeyHash(s.name, s.public())
	blob := append(h[:], ed25519.Sign(s.priv, []byte(body))...)
	return noteSignaturePrefix + s.name + " " + base64.StdEncoding.EncodeToString(blob) + "\n"
}

func (s testSigner) sign(body string) string { return body + "\n" + s.line(body) }

func TestAuditNoteRules(t *testing.T) {
	signer := newTestSigner("flk.test/local", 7)
	verifier, err := ParseVerifierKey(signer.verifierKey())
	if err != nil {
		t.Fatal(err)
	}
	root := LeafHash([]byte("r"))
	body := Checkpoint{Origin: "flk.test/local", Size: 12, Root: root}.Body()
	note := signer.sign(body)
	cp, err := verifier.OpenCheckpoint(note)
	if err != nil || cp.Size != 12 || cp.Root != root || cp.Origin != "flk.test/local" {
		t.Fatalf("open: %+v %v", cp, err)
	}
	// Other keys' signatures are ignored, before or after ours.
	witness := newTestSigner("witness.example", 9)
	for _, n := range []string{
		body + "\n" + witness.line(body) + signer.line(body),
		body + "\n" + signer.line(body) + witness.line(body),
		body + "\n" + noteSignaturePrefix + "flk.test/local AAAA\n" + signer.line(body), // same name, short blob
	} {
		if _, err := verifier.Open(n); err != nil {
			t.Errorf("open with other signatures: %v\n%s", err, n)
		}
	}
	other := newTestSigner("flk.test/local", 8)
	otherLog := newTestSigner("flk.test/other", 7)
	cases := []struct {
		name string
		note string
		kind CheckpointErrorKind
		msg  string
	}{
		{"no signature block", body, CheckpointMalformed, "no signature block"},
		{"empty", "", CheckpointMalformed, "no signature block"},
		{"signature block without newline", strings.TrimSuffix(note, "\n"), CheckpointMalformed, "end with a newline"},
		{"empty signature block", body + "\n", CheckpointMalformed, ""},
		{"empty line in body", "a\n\n" + note, CheckpointMalformed, "empty line"},
		{"body starts with newline", "\n" + note, CheckpointMalformed, "empty line"},
		{"control character", signer.sign("a\tb\n1\n" + root.String() + "\n"), CheckpointMalformed, "control"},
		{"C1 control character", signer.sign("a\u0085b\n1\n" + root.String() + "\n"), CheckpointMalformed, "control"},
		{"invalid UTF-8", "\xff" + note, CheckpointMalformed, "UTF-8"},
		{"hyphen instead of em dash", body + "\n- " + strings.TrimPrefix(signer.line(body), noteSignaturePrefix), CheckpointMalformed, "em dash"},
		{"no space in signature line", body + "\n" + noteSignaturePrefix + "flk.test/local\n", CheckpointMalformed, "name and signature"},
		{"signature not base64", body + "\n" + noteSignaturePrefix + "flk.test/local !!!!\n", CheckpointMalformed, "not base64"},
		{"only another key's signature", body + "\n" + witness.line(body), CheckpointSignature, "no signature by flk.test/local"},
		{"another key of the same name", other.sign(body), CheckpointSignature, "different key named"},
		{"signature truncated", truncateSig(signer.sign(body)), CheckpointSignature, "not 64 bytes"},
		{"body changed", strings.Replace(note, "\n12\n", "\n13\n", 1), CheckpointSignature, "does not verify"},
		{"origin of another log", signer.sign(strings.Replace(body, "flk.test/local", "flk.test/other", 1)), CheckpointSignature, "origin"},
		{"signed by the other log's key", otherLog.sign(body), CheckpointSignature, "no signature"},
		{"body not a checkpoint", signer.sign("just text\n"), CheckpointMalformed, "three lines"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := verifier.OpenCheckpoint(c.note)
			var ce *CheckpointError
			if !errors.As(err, &ce) || ce.Kind != c.kind || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %s error mentioning %q", err, c.kind, c.msg)
			}
		})
	}
}

// truncateSig drops the last byte of the signature in a note's last line.
func truncateSig(note string) string {
	i := strings.LastIndex(note, " ")
	blob, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(note[i+1:], "\n"))
	return note[:i+1] + base64.StdEncoding.EncodeToString(blob[:len(blob)-1]) + "\n"
}

func TestAuditCheckpointBodies(t *testing.T) {
	root := LeafHash(nil).String()
	good := "o\n12\n" + root + "\n"
	if c, err := ParseCheckpoint(good); err != nil || c.Size != 12 || c.Body() != good {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ParseCheckpoint("o\n18446744073709551615\n" + root + "\n"); err != nil || c.Size != 1<<64-1 {
		t.Fatalf("largest size: %+v %v", c, err)
	}
	for _, body := range []string{
		"",
		"o\n12\n",
		"o\n12\n" + root,
		"o\n12\n" + root + "\n\n",
		"o\n12\n" + root + "\next\n",
		"\n12\n" + root + "\n",
		"o\n012\n" + root + "\n",
		"o\n\n" + root + "\n",
		"o\n+12\n" + root + "\n",
		"o\n-1\n" + root + "\n",
		"o\n1 2\n" + root + "\n",
		"o\n0x1\n" + root + "\n",
		"o\n١٢\n" + root + "\n", // non-ASCII digits
		"o\n18446744073709551616\n" + root + "\n",
		"o\n12\nshort\n",
		"o\n12\n" + strings.TrimRight(root, "=") + "\n",
		"o\n12\n" + base64.StdEncoding.EncodeToString(make([]byte, 33)) + "\n",
	} {
		_, err := ParseCheckpoint(body)
		var ce *CheckpointError
		if !errors.As(err, &ce) || ce.Kind != CheckpointMalformed {
			t.Errorf("%q: %v", body, err)
		}
	}
	if _, err := ParseCheckpoint("o\n0\n" + EmptyRoot().String() + "\n"); err != nil {
		t.Errorf("size 0: %v", err)
	}
}

// TestAuditSmallOrderKeys shows why verification adds ed25519-dalek's strict
// checks to crypto/ed25519: with the identity as public key and as R, the
// all-zero s "signs" every message under the plain equation.
func TestAuditSmallOrderKeys(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1
	sig := append(append([]byte(nil), identity...), make([]byte, 32)...)
	if !ed25519.Verify(identity, []byte("any message"), sig) {
		t.Fatal("expected crypto/ed25519 to accept the degenerate signature; the test premise changed")
	}
	if verifyEd25519Strict(identity, []byte("any message"), sig) {
		t.Fatal("strict verification accepted a small-order key")
	}
	name := "flk.test/weak"
	key := newTestKey(name, append([]byte{1}, identity...))
	verifier, err := ParseVerifierKey(key)
	if err != nil {
		t.Fatalf("a small-order key decodes (dalek parses it too): %v", err)
	}
	body := "flk.test/weak\n1\n" + LeafHash(nil).String() + "\n"
	h := noteKeyHash(name, identity)
	note := body + "\n" + noteSignaturePrefix + name + " " + base64.StdEncoding.EncodeToString(append(h[:], sig...)) + "\n"
	_, err = verifier.OpenCheckpoint(note)
	var ce *CheckpointError
	if !errors.As(err, &ce) || ce.Kind != CheckpointSignature {
		t.Fatalf("degenerate signature: %v", err)
	}
	// Every small-order encoding is recognised, with either sign bit, and a
	// real key is not.
	for _, y := range edSmallOrderY {
		enc := make([]byte, 32)
		be := y.Bytes()
		for i := range be {
			enc[i] = be[len(be)-1-i]
		}
		for _, sign := range []byte{0, 0x80} {
			e := append([]byte(nil), enc...)
			e[31] |= sign
			if !ed25519SmallOrder(e) || !ed25519Decodes(e) {
				t.Errorf("%x: small order %v, decodes %v", e, ed25519SmallOrder(e), ed25519Decodes(e))
			}
		}
	}
	genuine := newTestSigner("x", 1).public()
	if ed25519SmallOrder(genuine) || !ed25519Decodes(genuine) {
		t.Error("a real public key is misclassified")
	}
}

// FuzzAuditOpen feeds arbitrary notes and leaves to the parsers: errors,
// never panics.
func FuzzAuditOpen(f *testing.F) {
	signer := newTestSigner("flk.test/local", 7)
	body := Checkpoint{Origin: "flk.test/local", Size: 3, Root: EmptyRoot()}.Body()
	f.Add(signer.sign(body))
	f.Add(body + "\n\u2014 flk.test/local AAAA\n")
	f.Add(`{"decided_at_ms":1,"dedup":"first","source":{"topic":"t"},"v":1}`)
	f.Add("\n\n\n")
	verifier, err := ParseVerifierKey(signer.verifierKey())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if cp, err := verifier.OpenCheckpoint(text); err == nil && cp.Origin != "flk.test/local" {
			t.Fatalf("accepted a checkpoint of %q", cp.Origin)
		}
		_, _ = ParseCheckpoint(text)
		_, _ = ParseVerifierKey(text)
		_, _ = DecodeAuditLeaf([]byte(text))
	})
}
