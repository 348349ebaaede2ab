package flk

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeExample builds and runs the README's example exactly as written
// against a fake gateway, so the documentation cannot rot.
func TestReadmeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a program")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	code, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README has no go code block")
	}
	sdkDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goMod := "module readme.example\n\ngo 1.25.0\n\nrequire github.com/flk-project/flk/sdk/go v0.0.0\n\n" +
		"replace github.com/flk-project/flk/sdk/go => " + sdkDir + "\n"
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"go.mod": goMod, "go.sum": string(sum), "main.go": code} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p, err := DecodePCS(body)
		if err != nil || r.Header.Get("X-Tenant-Id") != "acme" || r.URL.Path != "/v1/pcs/submit" ||
			!VerifyHMAC(p.CanonicalPayload(), []byte("testsecret"), p.Sig) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"accepted":true,"escalated":true,"reason":"agent reported degraded mode"}`)
	}))
	defer srv.Close()

	goldenPath, err := filepath.Abs(goldenDir + "pcs_tiny_case_1.json")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gobin, "run", "-mod=mod", ".", goldenPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FLK_URL="+srv.URL, "FLK_HMAC_KEY=testsecret")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README example failed: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "escalated agent reported degraded mode" {
		t.Fatalf("README example printed %q", got)
	}
}
