package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const contractFields = `{"pcs_id":"test-id","merkle_root":"abc123","epoch":1,"shard_id":"shard-001","D_hat":1.412345679,"coh_star":0.73456789,"r":0.871234568,"budget":0.421234568}`

const contractPayload = `{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}`

// seedB64 is the CONTRACT's Ed25519 seed, bytes 0x00..0x1f.
const seedB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func golden(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../../../tests/vectors/golden/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestSignHMAC(t *testing.T) {
	out, errOut, code := runCLI(t, contractFields, "sign", "--key", "testsecret")
	if code != 0 || out != "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
	// A whole PCS works too, and --alg hmac is the default.
	out, _, code = runCLI(t, golden(t, "pcs_tiny_case_1.json"), "sign", "--alg", "hmac", "--key=testsecret")
	if code != 0 || out != "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4=\n" {
		t.Fatalf("golden: exit %d, out %q", code, out)
	}
}

func TestSignHMACEmptyAndUnicodeKeys(t *testing.T) {
	for _, key := range []string{"", "clé-🔑", " "} {
		out, errOut, code := runCLI(t, contractFields, "sign", "--key", key)
		if code != 0 || len(out) != 45 || !strings.HasSuffix(out, "=\n") {
			t.Errorf("key %q: exit %d, out %q, err %q", key, code, out, errOut)
		}
	}
	a, _, _ := runCLI(t, contractFields, "sign", "--key", "")
	b, _, _ := runCLI(t, contractFields, "sign", "--key", " ")
	if a == b {
		t.Fatal("empty and space keys give the same signature")
	}
}

func TestSignEd25519(t *testing.T) {
	out, errOut, code := runCLI(t, golden(t, "pcs_tiny_case_1.json"), "sign", "--alg", "ed25519", "--seed", seedB64)
	want := "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg==\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestCanonicalHasNoTrailingNewline(t *testing.T) {
	out, errOut, code := runCLI(t, contractFields+"\n", "canonical")
	if code != 0 || out != contractPayload {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
	// Integers for float fields become floats; an absent r signs as 0.0.
	out, _, code = runCLI(t, `{"pcs_id":"p","merkle_root":"m","epoch":0,"shard_id":"s","D_hat":1,"coh_star":0,"budget":2}`, "canonical")
	if code != 0 || out != `{"D_hat":1.0,"budget":2.0,"coh_star":0.0,"epoch":0,"merkle_root":"m","pcs_id":"p","r":0.0,"shard_id":"s"}` {
		t.Fatalf("exit %d, out %q", code, out)
	}
}

func TestBatch(t *testing.T) {
	in := `{"fields": ` + contractFields + `, "hmac_key": "testsecret", "ed25519_seed": "` + seedB64 + `"}` + "\n\n" +
		`{"fields": {"pcs_id":"<&>","merkle_root":"é","epoch":2,"shard_id":"\ud83d\ude00","D_hat":1.5e-9,"coh_star":1e16,"r":null,"budget":-0.0}, "hmac_key": ""}`
	out, errOut, code := runCLI(t, in, "batch")
	if code != 0 {
		t.Fatalf("exit %d, err %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out)
	}
	var first, second map[string]string
	if json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("output is not JSON lines: %q", out)
	}
	if first["payload"] != contractPayload || first["hmac"] != "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=" || len(first["ed25519"]) != 88 {
		t.Fatalf("first line %v", first)
	}
	wantPayload := `{"D_hat":2e-09,"budget":-0.0,"coh_star":1e+16,"epoch":2,"merkle_root":"\u00e9","pcs_id":"<&>","r":0.0,"shard_id":"\ud83d\ude00"}`
	if second["payload"] != wantPayload || second["hmac"] == "" {
		t.Fatalf("second line %v\nwant payload %s", second, wantPayload)
	}
	if _, ok := second["ed25519"]; ok {
		t.Fatal("ed25519 printed without a seed")
	}
	if !strings.Contains(lines[1], `"<&>`) {
		t.Fatalf("HTML escaping in output: %s", lines[1])
	}
}

func TestBadInputExitsOne(t *testing.T) {
	cases := []struct {
		stdin string
		args  []string
	}{
		{contractFields, nil},
		{contractFields, []string{"nope"}},
		{contractFields, []string{"sign"}},
		{contractFields, []string{"sign", "--alg", "ed25519"}},
		{contractFields, []string{"sign", "--alg", "ed25519", "--seed", "AAAA"}},
		{contractFields, []string{"sign", "--alg", "ed25519", "--seed", "!!"}},
		{contractFields, []string{"sign", "--alg", "rsa", "--key", "k"}},
		{contractFields, []string{"sign", "--key", "\xff"}},
		{contractFields, []string{"sign", "--bogus"}},
		{`{"pcs_id":"x"}`, []string{"sign", "--key", "k"}},
		{strings.Replace(contractFields, `"epoch":1`, `"epoch":1.0`, 1), []string{"canonical"}},
		{`[]`, []string{"canonical"}},
		{`not json`, []string{"canonical"}},
		{`{"fields": {}}`, []string{"batch"}},
		{`{"hmac_key": "k"}`, []string{"batch"}},
		{`{"fields": ` + contractFields + `, "ed25519_seed": "short"}`, []string{"batch"}},
		{`nope`, []string{"batch"}},
		{"", []string{"pcs-id", "a", "1.5", "s"}},
		{"", []string{"pcs-id", "a"}},
	}
	for _, c := range cases {
		out, errOut, code := runCLI(t, c.stdin, c.args...)
		if code != 1 || errOut == "" {
			t.Errorf("%v on %q: exit %d, stdout %q, stderr %q", c.args, c.stdin, code, out, errOut)
		}
	}
}

func TestBatchErrorNamesLineAndKey(t *testing.T) {
	in := `{"fields": ` + contractFields + `, "hmac_key": "k"}` + "\n" +
		`{"fields": ` + strings.Replace(contractFields, `"epoch":1`, `"epoch":1.0`, 1) + `}` + "\n"
	out, errOut, code := runCLI(t, in, "batch")
	if code != 1 || !strings.Contains(errOut, "line 2") || !strings.Contains(errOut, "epoch") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("lines before the bad one should be printed: %q", out)
	}
}

func TestPcsID(t *testing.T) {
	out, _, code := runCLI(t, "", "pcs-id", "abc123", "1", "shard-001")
	if code != 0 || out != "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93\n" {
		t.Fatalf("exit %d, out %q", code, out)
	}
}
