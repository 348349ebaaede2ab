package flk

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// goldenWith returns golden case 1 with one top-level key replaced (or
// removed when value is "").
func goldenWith(t *testing.T, key, value string) []byte {
	t.Helper()
	data, err := os.ReadFile(goldenDir + "pcs_tiny_case_1.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeErrKey(t *testing.T, body []byte) string {
	t.Helper()
	_, err := DecodePCS(body)
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("DecodePCS(%s) error = %v, want *DecodeError", body, err)
	}
	if de.Key != "" && !strings.Contains(err.Error(), de.Key) {
		t.Fatalf("error %q does not mention key %q", err, de.Key)
	}
	return de.Key
}

func TestDecodeGolden(t *testing.T) {
	p := loadGolden(t, "pcs_tiny_case_1.json")
	if p.Epoch != 1 || len(p.Scales) != 4 || p.NJ["16"] != 15 || p.FT == nil || p.FT.Degraded {
		t.Fatalf("decoded %+v", p)
	}
	if p.R == nil || *p.R != 0.318421053 || p.SentAt != "2025-01-19T12:00:00Z" || *p.Seed != 42 {
		t.Fatalf("optional fields %+v", p)
	}
}

func TestDecodeRejectsWithKey(t *testing.T) {
	cases := []struct{ key, value, wantKey string }{
		{"epoch", "1.0", "epoch"},
		{"epoch", "1e0", "epoch"},
		{"epoch", `"1"`, "epoch"},
		{"epoch", "null", "epoch"},
		{"epoch", "18446744073709551615", "epoch"},
		{"epoch", "", "epoch"},
		{"N_j", "", "N_j"},
		{"coh_star", "", "coh_star"},
		{"D_hat", "", "D_hat"},
		{"regime", "", "regime"},
		{"budget", "", "budget"},
		{"D_hat", `"1.0"`, "D_hat"},
		{"D_hat", "1e400", ""},
		{"unknown", "-1e309", ""},
		{"epoch", "-0", "epoch"},
		{"coh_star", "true", "coh_star"},
		{"pcs_id", "5", "pcs_id"},
		{"regime", "null", "regime"},
		{"scales", "[2, 0]", "scales"},
		{"scales", "[2, -4]", "scales"},
		{"scales", "[2, 4.0]", "scales"},
		{"scales", "{}", "scales"},
		{"N_j", `{"2": 1.5}`, "N_j.2"},
		{"N_j", "[]", "N_j"},
		{"ft", `{"degraded": "yes"}`, "ft.degraded"},
		{"ft", `{"fallbacks": [1]}`, "ft.fallbacks"},
		{"ft", `{"outbox_seq": 0.5}`, "ft.outbox_seq"},
		{"ft", "[]", "ft"},
		{"sent_at", `"2025-01-19T12:00:00"`, "sent_at"},
		{"sent_at", `"2025-01-19 12:00:00Z"`, "sent_at"},
		{"sent_at", `"yesterday"`, "sent_at"},
		{"sent_at", "12", "sent_at"},
		{"v_star", `[1, "x"]`, "v_star"},
		{"attempt", "1.5", "attempt"},
		{"seed", `"42"`, "seed"},
		{"r", `"0.3"`, "r"},
		{"sig", "1", "sig"},
		{"merkle_root", `"\ud800"`, ""},
		{"shard_id", `"\udc00x"`, ""},
		{"unknown", `["\ud800\u0041"]`, ""},
	}
	for _, c := range cases {
		if got := decodeErrKey(t, goldenWith(t, c.key, c.value)); got != c.wantKey {
			t.Errorf("%s=%s: error key %q, want %q", c.key, c.value, got, c.wantKey)
		}
	}
}

func TestDecodeRejectsNonObjects(t *testing.T) {
	for _, body := range []string{"", "[1]", "null", "1", `"x"`, "{", `{"a":1} x`, `{"a":1}{}`, "\xff{}", `{"a"}`} {
		if key := decodeErrKey(t, []byte(body)); key != "" {
			t.Errorf("body %q: key %q, want none", body, key)
		}
	}
}

func TestDecodeLenientWhereTheContractIs(t *testing.T) {
	accept := []struct{ key, value string }{
		{"pcs_id", ""}, {"schema", ""}, {"version", ""}, {"shard_id", ""},
		{"merkle_root", ""}, {"scales", ""}, {"pcs_id", "null"}, {"scales", "null"},
		{"r", "null"}, {"r", ""}, {"ft", "null"}, {"sig", "null"}, {"v_star", "null"},
		{"D_hat", "1"}, {"budget", "0"}, {"epoch", "-3"}, {"D_hat", "-0"},
		{"sent_at", `"2025-01-19T12:00:00+05:30"`}, {"sent_at", `"2025-01-19t12:00:00.5z"`},
		{"N_j", `{"2": -1, "x": 0}`}, {"unknown", `{"deep": [1.5]}`},
		{"ft", `{"degraded": true, "other": "x"}`},
		{"shard_id", `"\ud83d\ude00"`},
	}
	for _, c := range accept {
		if _, err := DecodePCS(goldenWith(t, c.key, c.value)); err != nil {
			t.Errorf("%s=%q rejected: %v", c.key, c.value, err)
		}
	}
	p, err := DecodePCS([]byte(`{"epoch":1,"epoch":2,"N_j":{},"coh_star":0,"D_hat":0,"regime":"","budget":0}`))
	if err != nil || p.Epoch != 2 {
		t.Fatalf("repeated key: %v, %+v", err, p)
	}
}

func TestDecodeAstralStringSignsAsSurrogatePair(t *testing.T) {
	p, err := DecodePCS(goldenWith(t, "shard_id", `"s\ud83d\ude00"`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p.CanonicalPayload()), `"shard_id":"s\ud83d\ude00"`) {
		t.Fatalf("payload %s", p.CanonicalPayload())
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	p := loadGolden(t, "pcs_tiny_case_1.json")
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodePCS(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(q.CanonicalPayload()) != string(p.CanonicalPayload()) || q.Sig != p.Sig {
		t.Fatalf("round trip changed the record:\n%s\n%s", p.CanonicalPayload(), q.CanonicalPayload())
	}
}
