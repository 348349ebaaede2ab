package flk

import (
	"encoding/json"
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
	gobin, dir := readmeProgram(t, "## Example\n")
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

// readmeProgram writes the first go code block after heading in README.md,
// exactly as written, into a module of its own that uses this directory's
// SDK, and returns the go tool and that module's directory. It skips the
// test in -short mode or without the go tool.
func readmeProgram(t *testing.T, heading string) (gobin, dir string) {
	t.Helper()
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
	_, section, ok := strings.Cut(string(readme), heading)
	if !ok {
		t.Fatalf("README has no heading %q", heading)
	}
	_, rest, ok := strings.Cut(section, "```go\n")
	code, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("README has no go code block after %q", heading)
	}
	sdkDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
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
	return gobin, dir
}

// TestReadmeAuditExample builds the README's audit-proof example exactly as
// written and runs it on the shared vectors' bundles.
func TestReadmeAuditExample(t *testing.T) {
	gobin, dir := readmeProgram(t, "## Verifying audit proofs offline\n")
	v := loadAuditVectors(t)
	build := exec.Command(gobin, "build", "-mod=mod", "-o", "example", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("README audit example does not build: %v\n%s", err, out)
	}
	for _, c := range v.Bundles.Cases {
		t.Run(c.Name, func(t *testing.T) {
			bundle, err := json.Marshal(c.Bundle)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{filepath.Join(dir, "bundle.json")}
			files := map[string][]byte{args[0]: bundle}
			if string(c.Record) != "null" {
				args = append(args, filepath.Join(dir, "record.json"))
				files[args[1]] = c.Record
			}
			for name, content := range files {
				if err := os.WriteFile(name, content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(filepath.Join(dir, "example"), args...)
			cmd.Env = append(os.Environ(), "FLK_LOG_KEY="+v.Bundles.VerifierKey)
			out, err := cmd.CombinedOutput()
			text := strings.TrimSpace(string(out))
			if c.Expect == "ok" {
				if err != nil || text != "entry 5 of flk.example/vectors (size 12): tenant alpha, outcome accepted" {
					t.Fatalf("README audit example: %v, printed %q", err, text)
				}
				return
			}
			if err == nil || !strings.Contains(text, " "+c.Expect+": ") {
				t.Fatalf("README audit example: %v, printed %q, want a %s error", err, text, c.Expect)
			}
		})
	}
}
