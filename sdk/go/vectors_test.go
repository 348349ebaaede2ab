package flk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The shared vector file (tests/vectors/README.md) is the one source of
// truth every implementation runs in full; these tests never edit it.
// FLK_VECTORS_DIR points elsewhere, to try a candidate file before it lands.
var (
	vectorDir = envOr("FLK_VECTORS_DIR", "../../tests/vectors")
)

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

type vectors struct {
	Format  int `json:"format"`
	Signing []struct {
		Name          string          `json:"name"`
		Fields        json.RawMessage `json:"fields"`
		HMACKey       *string         `json:"hmac_key"`
		Payload       string          `json:"payload"`
		HMAC          string          `json:"hmac"`
		HMACPrehash   string          `json:"hmac_prehash"`
		Ed25519Seed   string          `json:"ed25519_seed"`
		Ed25519Public string          `json:"ed25519_public"`
		Ed25519       string          `json:"ed25519"`
	} `json:"signing"`
	Rounding []struct {
		Input      json.Number `json:"input"`
		OutputRepr string      `json:"output_repr"`
	} `json:"rounding"`
	PcsID []struct {
		MerkleRoot string `json:"merkle_root"`
		Epoch      int64  `json:"epoch"`
		ShardID    string `json:"shard_id"`
		PcsID      string `json:"pcs_id"`
	} `json:"pcs_id"`
	Verification []struct {
		Name     string                     `json:"name"`
		Params   map[string]json.Number     `json:"params"`
		PCS      json.RawMessage            `json:"pcs"`
		Expected map[string]json.RawMessage `json:"expected"`
		Status   int                        `json:"status"`
	} `json:"verification"`
	Malformed []struct {
		Name string  `json:"name"`
		Body string  `json:"body"`
		Key  *string `json:"key"`
	} `json:"malformed"`
}

// loadVectors reads the shared file after checking it against its pinned
// SHA-256; it skips the test while the file does not exist yet (the CONTRACT
// vectors in the other tests still run).
func loadVectors(t *testing.T) *vectors {
	t.Helper()
	data := readPinnedVectors(t, "pcs-vectors.json")
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v vectors
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode vectors: %v", err)
	}
	if v.Format != 1 {
		t.Fatalf("vector format %d, this suite reads format 1", v.Format)
	}
	return &v
}

// readPinnedVectors reads vectorDir/name after checking it against the
// SHA-256 pinned in name.sha256 (`<hex>  <name>`); it skips the test while
// the file does not exist yet.
func readPinnedVectors(t *testing.T, name string) []byte {
	t.Helper()
	path := vectorDir + "/" + name
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not written yet", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := os.ReadFile(path + ".sha256")
	if err != nil {
		t.Fatalf("the vector file must have its pinned sum: %v", err)
	}
	sum := sha256.Sum256(data)
	want := strings.Fields(string(pinned))
	if len(want) != 2 || want[1] != name {
		t.Fatalf("%s.sha256 is not `<hex>  %s`: %q", path, name, pinned)
	}
	if got := hex.EncodeToString(sum[:]); got != want[0] {
		t.Fatalf("%s has sha256 %s, pinned %s: edit only through the generator", name, got, want[0])
	}
	return data
}

func TestVectorsSigning(t *testing.T) {
	v := loadVectors(t)
	if len(v.Signing) == 0 {
		t.Fatal("no signing vectors")
	}
	for _, c := range v.Signing {
		t.Run(c.Name, func(t *testing.T) {
			f, err := DecodeSignedFields(c.Fields)
			if err != nil {
				t.Fatalf("fields: %v", err)
			}
			payload := f.CanonicalPayload()
			if string(payload) != c.Payload {
				t.Fatalf("payload\n got %s\nwant %s", payload, c.Payload)
			}
			if c.HMACKey != nil {
				key := []byte(*c.HMACKey)
				if got := SignHMAC(payload, key); got != c.HMAC {
					t.Errorf("hmac %s, want %s", got, c.HMAC)
				}
				if !VerifyHMAC(payload, key, c.HMAC) {
					t.Errorf("hmac does not verify")
				}
				if c.HMACPrehash != "" {
					if got := SignHMACPrehash(payload, key); got != c.HMACPrehash {
						t.Errorf("hmac_prehash %s, want %s", got, c.HMACPrehash)
					}
					if !VerifyHMACPrehash(payload, key, c.HMACPrehash) {
						t.Errorf("hmac_prehash does not verify")
					}
				}
			}
			if c.Ed25519Seed != "" {
				seed := mustB64(t, c.Ed25519Seed)
				if pub, err := Ed25519PublicKey(seed); err != nil || pub != c.Ed25519Public {
					t.Errorf("ed25519_public %s (%v), want %s", pub, err, c.Ed25519Public)
				}
				if sig, err := SignEd25519(payload, seed); err != nil || sig != c.Ed25519 {
					t.Errorf("ed25519 %s (%v), want %s", sig, err, c.Ed25519)
				}
				if !VerifyEd25519(payload, mustB64(t, c.Ed25519Public), c.Ed25519) {
					t.Errorf("ed25519 does not verify")
				}
			}
		})
	}
}

func TestVectorsRounding(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Rounding {
		x, err := strconv.ParseFloat(string(c.Input), 64)
		if err != nil {
			t.Fatalf("input %s: %v", c.Input, err)
		}
		if got := FormatFloat(Round9(x)); got != c.OutputRepr {
			t.Errorf("round9(%s) = %s, want %s", c.Input, got, c.OutputRepr)
		}
	}
}

func TestVectorsPcsID(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.PcsID {
		if got := PcsID(c.MerkleRoot, c.Epoch, c.ShardID); got != c.PcsID {
			t.Errorf("PcsID(%q, %d, %q) = %s, want %s", c.MerkleRoot, c.Epoch, c.ShardID, got, c.PcsID)
		}
	}
}

// paramsWith applies a vector's parameter overrides to the defaults.
func paramsWith(t *testing.T, overrides map[string]json.Number) Params {
	t.Helper()
	p := DefaultParams()
	fields := map[string]*float64{
		"tol_D": &p.TolD, "tol_coh": &p.TolCoh, "alpha": &p.Alpha, "beta": &p.Beta,
		"gamma": &p.Gamma, "base": &p.Base, "D0": &p.D0, "budget_tol": &p.BudgetTol,
	}
	for name, value := range overrides {
		dst, ok := fields[name]
		if !ok {
			t.Fatalf("unknown parameter %q", name)
		}
		x, err := value.Float64()
		if err != nil {
			t.Fatalf("parameter %s: %v", name, err)
		}
		*dst = x
	}
	return p
}

func TestVectorsVerification(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Verification {
		t.Run(c.Name, func(t *testing.T) {
			p, err := DecodePCS(c.PCS)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			o := Verify(p, paramsWith(t, c.Params))
			var got map[string]json.RawMessage
			if err := json.Unmarshal([]byte(outcomeJSON(t, o)), &got); err != nil {
				t.Fatal(err)
			}
			for key := range got {
				if _, ok := c.Expected[key]; !ok {
					t.Errorf("outcome has %s=%s, absent from expected", key, got[key])
				}
			}
			for key, want := range c.Expected {
				have, ok := got[key]
				switch {
				case !ok:
					t.Errorf("outcome lacks %s (want %s)", key, want)
				case strings.HasPrefix(key, "recomputed_"):
					if numberOf(t, have) != numberOf(t, want) {
						t.Errorf("%s = %s, want %s", key, have, want)
					}
				case !jsonEqual(t, have, want):
					t.Errorf("%s = %s, want %s", key, have, want)
				}
			}
			if o.HTTPStatus() != c.Status {
				t.Errorf("status %d, want %d", o.HTTPStatus(), c.Status)
			}
		})
	}
}

func TestVectorsMalformed(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Malformed {
		t.Run(c.Name, func(t *testing.T) {
			_, err := DecodePCS([]byte(c.Body))
			if err == nil {
				t.Fatalf("accepted %s", c.Body)
			}
			if c.Key != nil && !strings.Contains(err.Error(), *c.Key) {
				t.Errorf("error %q does not mention key %q", err, *c.Key)
			}
			// Stricter than the format asks: the key is the same one the
			// server names, and none for a body that is not an object.
			var de *DecodeError
			want := ""
			if c.Key != nil {
				want = *c.Key
			}
			if !errors.As(err, &de) || de.Key != want {
				t.Errorf("error %v names key %q, want %q", err, de.Key, want)
			}
		})
	}
}

func numberOf(t *testing.T, raw json.RawMessage) float64 {
	t.Helper()
	x, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		t.Fatalf("not a number: %s", raw)
	}
	return x
}

// jsonEqual compares two JSON values by meaning (strings after unescaping).
func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		t.Fatalf("bad JSON: %s / %s", a, b)
	}
	return x == y
}
