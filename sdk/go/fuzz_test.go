package flk

import (
	"encoding/json"
	"math"
	"os"
	"testing"
	"unicode/utf8"
)

// FuzzDecodePCS feeds arbitrary bytes to the decoder of untrusted bodies: it
// must never panic, every error must be a *DecodeError, and whatever it
// accepts must survive an encode/decode round trip with the same signed
// payload (otherwise a client could sign bytes the server reads differently).
// Run: go test -fuzz=FuzzDecodePCS
func FuzzDecodePCS(f *testing.F) {
	for _, name := range []string{"pcs_tiny_case_1.json", "pcs_tiny_case_2.json"} {
		if data, err := os.ReadFile(goldenDir + name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"epoch":1.0}`))
	f.Add([]byte(`{"pcs_id":"\ud800","epoch":1,"N_j":{},"coh_star":0,"D_hat":0,"regime":"","budget":0}`))
	f.Add([]byte(`{"epoch":1,"N_j":{"2":1},"coh_star":1e400,"D_hat":0,"regime":"x","budget":0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePCS(data)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			return
		}
		encoded, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted a record it cannot encode: %v", err)
		}
		q, err := DecodePCS(encoded)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", encoded, err)
		}
		if a, b := p.CanonicalPayload(), q.CanonicalPayload(); string(a) != string(b) {
			t.Fatalf("payload changed across a round trip:\n%s\n%s", a, b)
		}
		_ = Verify(p, DefaultParams()) // must not panic either
	})
}

// FuzzCanonicalRoundTrip checks that the canonical payload is stable: it is
// valid JSON, decoding it gives back the same (rounded) fields, and signing
// those again yields the very same bytes. Round9 must be idempotent.
// Run: go test -fuzz=FuzzCanonicalRoundTrip
func FuzzCanonicalRoundTrip(f *testing.F) {
	f.Add("test-id", "abc123", int64(1), "shard-001", 1.412345678901234, 0.1234567895, 1.5e-9, 12345.6789012345)
	f.Add("\u00e9\U0001F600\x00\"\\/<>&", "", int64(-5), "\x7f\n", -0.0, 1e16, 1e-5, -1e-12)
	f.Fuzz(func(t *testing.T, pcsID, merkleRoot string, epoch int64, shardID string, d, coh, r, budget float64) {
		for _, x := range []float64{d, coh, r, budget} {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return // cannot occur in JSON
			}
			if once := Round9(x); Round9(once) != once || math.Signbit(Round9(once)) != math.Signbit(once) {
				t.Fatalf("Round9 not idempotent at %v", x)
			}
		}
		f1 := SignedFields{pcsID, merkleRoot, epoch, shardID, d, coh, r, budget}
		payload := f1.CanonicalPayload()
		if !json.Valid(payload) {
			t.Fatalf("invalid JSON payload %s", payload)
		}
		for _, b := range payload {
			if b < 0x20 || b > 0x7e {
				t.Fatalf("non-ASCII byte %#x in payload %s", b, payload)
			}
		}
		f2, err := DecodeSignedFields(payload)
		if err != nil {
			t.Fatalf("decoding payload %s: %v", payload, err)
		}
		if again := f2.CanonicalPayload(); string(again) != string(payload) {
			t.Fatalf("payload not stable:\n%s\n%s", payload, again)
		}
		if utf8.ValidString(pcsID) && f2.PcsID != pcsID {
			t.Fatalf("pcs_id %q came back as %q", pcsID, f2.PcsID)
		}
	})
}
