package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestBatchMatchesSharedVectors runs every signing case of the shared vector
// file through the batch command, the path the cross-language test uses.
// (The library's own tests check the file's pinned SHA-256.)
func TestBatchMatchesSharedVectors(t *testing.T) {
	data, err := os.ReadFile("../../../../tests/vectors/pcs-vectors.json")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("shared vector file not written yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Signing []struct {
			Name        string          `json:"name"`
			Fields      json.RawMessage `json:"fields"`
			HMACKey     *string         `json:"hmac_key"`
			Ed25519Seed *string         `json:"ed25519_seed"`
			Payload     string          `json:"payload"`
			HMAC        string          `json:"hmac"`
			Ed25519     string          `json:"ed25519"`
		} `json:"signing"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for _, c := range file.Signing {
		line, err := json.Marshal(map[string]any{"fields": c.Fields, "hmac_key": c.HMACKey, "ed25519_seed": c.Ed25519Seed})
		if err != nil {
			t.Fatal(err)
		}
		in.Write(line)
		in.WriteByte('\n')
	}
	out, errOut, code := runCLI(t, in.String(), "batch")
	if code != 0 {
		t.Fatalf("batch exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(file.Signing) {
		t.Fatalf("%d output lines for %d cases", len(lines), len(file.Signing))
	}
	for i, c := range file.Signing {
		var got batchResult
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if got.Payload != c.Payload {
			t.Errorf("%s: payload\n got %s\nwant %s", c.Name, got.Payload, c.Payload)
		}
		if c.HMACKey != nil && got.HMAC != c.HMAC {
			t.Errorf("%s: hmac %s, want %s", c.Name, got.HMAC, c.HMAC)
		}
		if c.Ed25519Seed != nil && got.Ed25519 != c.Ed25519 {
			t.Errorf("%s: ed25519 %s, want %s", c.Name, got.Ed25519, c.Ed25519)
		}
	}
}
