package flk

import (
	"encoding/base64"
	"testing"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

// goldenDir holds the original agent's golden files, kept in the repo next
// to the shared vectors so that every implementation reads the same copy.
const goldenDir = "../../tests/vectors/golden/"
