package flk_test

// The client and the Kafka producer against a running `flk serve`.
//
// infra/scripts/sdk-integration.sh starts an isolated server and sets
// FLK_GATEWAY_URL (tenant "default" signs with FLK_TEST_SECRET; tenant "slow"
// allows 0.5 records/s with a burst of 1 and checks no signatures),
// FLK_KAFKA_BROKERS and FLK_SUBMISSIONS_TOPIC, then runs
// `go test -count=1 -run Integration ./...`. Without FLK_GATEWAY_URL these
// tests skip, so `go test ./...` alone stays a unit run.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	flk "github.com/flk-project/flk/sdk/go"
	"github.com/flk-project/flk/sdk/go/kafka"
)

// integrationGateway returns the gateway URL or skips the test.
func integrationGateway(t *testing.T) string {
	t.Helper()
	url := os.Getenv("FLK_GATEWAY_URL")
	if url == "" {
		t.Skip("FLK_GATEWAY_URL is not set; infra/scripts/sdk-integration.sh starts flk serve and sets it")
	}
	return url
}

// integrationEnv reads a variable the script must set alongside FLK_GATEWAY_URL.
func integrationEnv(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s must be set when FLK_GATEWAY_URL is (see infra/scripts/sdk-integration.sh)", name)
	}
	return value
}

func testSecret() []byte {
	if s := os.Getenv("FLK_TEST_SECRET"); s != "" {
		return []byte(s)
	}
	return []byte("testsecret")
}

// freshPCS is golden case 1 with a new merkle_root (so a new pcs_id), signed
// with key.
func freshPCS(t *testing.T, key []byte) *flk.PCS {
	t.Helper()
	data, err := os.ReadFile("../../tests/vectors/golden/pcs_tiny_case_1.json")
	if err != nil {
		t.Fatal(err)
	}
	pcs, err := flk.DecodePCS(data)
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	pcs.MerkleRoot = hex.EncodeToString(root)
	pcs.PcsID = flk.PcsID(pcs.MerkleRoot, pcs.Epoch, pcs.ShardID)
	pcs.SignHMAC(key)
	return pcs
}

func mustJSON(t *testing.T, pcs *flk.PCS) []byte {
	t.Helper()
	body, err := json.Marshal(pcs)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func newIntegrationClient(t *testing.T, opts ...flk.Option) *flk.Client {
	t.Helper()
	c, err := flk.NewClient(integrationGateway(t), append([]flk.Option{flk.WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func integrationContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegrationSubmitReplayConflictLookup(t *testing.T) {
	c := newIntegrationClient(t)
	ctx := integrationContext(t)
	pcs := freshPCS(t, testSecret())

	first, err := c.Submit(ctx, pcs)
	if err != nil {
		t.Fatal(err)
	}
	if first.Kind != flk.Accepted || first.StatusCode != 200 || first.Replayed || first.Attempts != 1 {
		t.Fatalf("first submit: %+v", first)
	}
	if d := first.Decision; d.RecomputedDHat == nil || *d.RecomputedDHat != 0.528320834 ||
		d.RecomputedBudget == nil || *d.RecomputedBudget != 0.317807017 || d.PcsID != pcs.PcsID {
		t.Fatalf("first decision: %s", first.Decision.Raw)
	}

	again, err := c.SubmitRaw(ctx, mustJSON(t, pcs))
	if err != nil {
		t.Fatal(err)
	}
	if again.Kind != flk.Accepted || again.StatusCode != 200 || !again.Replayed {
		t.Fatalf("duplicate: %+v", again)
	}
	if !reflect.DeepEqual(again.Decision.Outcome, first.Decision.Outcome) {
		t.Fatalf("replayed %s, first %s", again.Decision.Raw, first.Decision.Raw)
	}

	changed := *pcs
	changed.Budget = 0.3178
	changed.SignHMAC(testSecret()) // validly signed, but other signed fields
	conflict, err := c.Submit(ctx, &changed)
	if err != nil {
		t.Fatal(err)
	}
	if conflict.Kind != flk.Conflict || conflict.StatusCode != 409 || conflict.Replayed {
		t.Fatalf("conflict: %+v", conflict)
	}
	if !reflect.DeepEqual(conflict.Decision.Outcome, first.Decision.Outcome) {
		t.Fatalf("conflict carries %s, first was %s", conflict.Decision.Raw, first.Decision.Raw)
	}
	var body struct {
		Error string `json:"error"`
		PcsID string `json:"pcs_id"`
	}
	if json.Unmarshal(conflict.Decision.Raw, &body) != nil || body.Error != "conflict" || body.PcsID != pcs.PcsID {
		t.Fatalf("conflict body %s", conflict.Decision.Raw)
	}

	stored, err := c.Lookup(ctx, pcs.PcsID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != 200 || stored.PcsID != pcs.PcsID || !reflect.DeepEqual(stored.Outcome, first.Decision.Outcome) {
		t.Fatalf("lookup %+v: %s", stored, stored.Raw)
	}
}

func TestIntegrationLookupMissingAndOtherTenant(t *testing.T) {
	c := newIntegrationClient(t)
	ctx := integrationContext(t)
	pcs := freshPCS(t, testSecret())
	if res, err := c.Submit(ctx, pcs); err != nil || res.Kind != flk.Accepted {
		t.Fatalf("submit: %+v %v", res, err)
	}
	if _, err := c.Lookup(ctx, freshPCS(t, testSecret()).PcsID); !errors.Is(err, flk.ErrNotFound) {
		t.Fatalf("never submitted: %v", err)
	}
	other := newIntegrationClient(t, flk.WithTenant("slow"), flk.WithMaxRetries(0))
	if _, err := other.Lookup(ctx, pcs.PcsID); !errors.Is(err, flk.ErrNotFound) {
		t.Fatalf("other tenant: %v", err)
	}
}

func TestIntegrationBadSignature(t *testing.T) {
	c := newIntegrationClient(t)
	ctx := integrationContext(t)
	pcs := freshPCS(t, []byte("not-the-tenant-secret"))
	_, err := c.Submit(ctx, pcs)
	var apiErr *flk.APIError
	if !errors.Is(err, flk.ErrUnauthorized) || !errors.As(err, &apiErr) {
		t.Fatalf("bad signature: %v", err)
	}
	if apiErr.StatusCode != 401 || apiErr.Code != "signature_invalid" || apiErr.Attempts != 1 {
		t.Fatalf("bad signature: %+v", apiErr)
	}
	// A 401 is never cached: the same id, correctly signed, is decided normally.
	pcs.SignHMAC(testSecret())
	if res, err := c.Submit(ctx, pcs); err != nil || res.Kind != flk.Accepted || res.Replayed {
		t.Fatalf("re-signed: %+v %v", res, err)
	}
}

func TestIntegrationRateLimitRetryAfter(t *testing.T) {
	noRetry := newIntegrationClient(t, flk.WithTenant("slow"), flk.WithMaxRetries(0))
	var waits []time.Duration
	retrying := newIntegrationClient(t, flk.WithTenant("slow"), flk.WithMaxRetries(5),
		flk.WithBackoff(100*time.Millisecond, time.Second),
		flk.WithSleep(func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
	ctx := integrationContext(t)

	// Spend the bucket's one token (waiting out a 429 left by another suite),
	// so the next requests surely find it empty.
	for {
		_, err := noRetry.Submit(ctx, freshPCS(t, nil))
		if err == nil {
			break
		}
		var apiErr *flk.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || ctx.Err() != nil {
			t.Fatalf("draining the bucket: %v", err)
		}
		time.Sleep(apiErr.RetryAfter)
	}

	_, err := noRetry.Submit(ctx, freshPCS(t, nil))
	var limited *flk.APIError
	if !errors.Is(err, flk.ErrRateLimited) || !errors.As(err, &limited) {
		t.Fatalf("expected 429: %v", err)
	}
	if limited.StatusCode != 429 || limited.Attempts != 1 || limited.Code != "rate_limited" || limited.RetryAfter < time.Second {
		t.Fatalf("429: %+v", limited)
	}

	started := time.Now()
	res, err := retrying.Submit(ctx, freshPCS(t, nil))
	elapsed := time.Since(started)
	if err != nil || res.Kind != flk.Accepted {
		t.Fatalf("after waiting: %+v %v", res, err)
	}
	// It waited what Retry-After said (whole seconds), not its jittered backoff (<= 100ms).
	if len(waits) == 0 || res.Attempts != len(waits)+1 || waits[0] != limited.RetryAfter {
		t.Fatalf("waits %v, attempts %d, Retry-After %v", waits, res.Attempts, limited.RetryAfter)
	}
	var total time.Duration
	for _, w := range waits {
		if w < time.Second || w%time.Second != 0 {
			t.Fatalf("wait %v is not a Retry-After", w)
		}
		total += w
	}
	if elapsed < total {
		t.Fatalf("returned after %v, before its %v of waits", elapsed, total)
	}
}

func TestIntegrationKafkaProducerRecordIsDecided(t *testing.T) {
	c := newIntegrationClient(t)
	brokers := strings.Split(integrationEnv(t, "FLK_KAFKA_BROKERS"), ",")
	topic := integrationEnv(t, "FLK_SUBMISSIONS_TOPIC")
	ctx := integrationContext(t)

	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers, Topic: topic, Tenant: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	pcs := freshPCS(t, testSecret())
	body := mustJSON(t, pcs)
	if err := producer.ProduceRaw(ctx, body); err != nil {
		t.Fatal(err)
	}

	var stored *flk.Decision
	delay := 50 * time.Millisecond
	for stored == nil {
		stored, err = c.Lookup(ctx, pcs.PcsID)
		if err != nil && !errors.Is(err, flk.ErrNotFound) {
			t.Fatalf("lookup: %v", err)
		}
		if stored == nil {
			select {
			case <-ctx.Done():
				t.Fatalf("no decision for the Kafka record: %v", ctx.Err())
			case <-time.After(delay):
			}
			delay = min(2*delay, 500*time.Millisecond)
		}
	}
	if stored.Status != 200 || !stored.Accepted || stored.Escalated || stored.RecomputedDHat == nil ||
		*stored.RecomputedDHat != 0.528320834 {
		t.Fatalf("Kafka record decided as %s", stored.Raw)
	}

	// The same bytes through the gateway are a duplicate of that decision.
	replay, err := c.SubmitRaw(ctx, body)
	if err != nil || !replay.Replayed || replay.Kind != flk.Accepted || !reflect.DeepEqual(replay.Decision.Outcome, stored.Outcome) {
		t.Fatalf("gateway after Kafka: %+v %v", replay, err)
	}
}

// TestIntegrationAuditProofBundleVerifiesOffline submits a fresh record, waits
// for the anchorer to log it, and checks its proof bundle with VerifyBundle
// against the run's verifier key: it holds for the record and fails with kind
// "record" for any other record.
func TestIntegrationAuditProofBundleVerifiesOffline(t *testing.T) {
	c := newIntegrationClient(t)
	gateway := strings.TrimRight(integrationGateway(t), "/")
	verifier, err := flk.ParseVerifierKey(integrationEnv(t, "FLK_AUDIT_VERIFIER_KEY"))
	if err != nil {
		t.Fatalf("FLK_AUDIT_VERIFIER_KEY: %v", err)
	}
	ctx := integrationContext(t)
	pcs := freshPCS(t, testSecret())
	if res, err := c.Submit(ctx, pcs); err != nil || res.Kind != flk.Accepted {
		t.Fatalf("submit: %+v %v", res, err)
	}

	proofURL := gateway + "/v1/audit/proof?pcs_id=" + url.QueryEscape(pcs.PcsID)
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, proofURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Tenant-Id", "default")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", proofURL, err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", proofURL, err)
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d %s", proofURL, resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %s not anchored within 30s: last answer 404 %s", pcs.PcsID, body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var bundle flk.ProofBundle
	if err := json.Unmarshal(body, &bundle); err != nil {
		t.Fatalf("bundle %s: %v", body, err)
	}
	record := pcs.SignedFields()
	checkpoint, leaf, err := flk.VerifyBundle(&bundle, verifier, &record)
	if err != nil {
		t.Fatalf("VerifyBundle: %v (bundle %s)", err, body)
	}
	if leaf.PcsID == nil || *leaf.PcsID != pcs.PcsID || leaf.Tenant != "default" {
		t.Fatalf("leaf %+v is not the record's for tenant default", leaf)
	}
	if bundle.LeafIndex >= checkpoint.Size {
		t.Fatalf("leaf index %d outside tree size %d", bundle.LeafIndex, checkpoint.Size)
	}

	// Another record: a different epoch, hence a different pcs_id.
	other := *pcs
	other.Epoch++
	other.PcsID = flk.PcsID(other.MerkleRoot, other.Epoch, other.ShardID)
	otherFields := other.SignedFields()
	// The same pcs_id with different signed bytes.
	changed := *pcs
	changed.Budget += 0.001
	changedFields := changed.SignedFields()
	for name, fields := range map[string]*flk.SignedFields{"other pcs_id": &otherFields, "changed budget": &changedFields} {
		_, _, err := flk.VerifyBundle(&bundle, verifier, fields)
		var bundleErr *flk.BundleError
		if !errors.As(err, &bundleErr) || bundleErr.Kind != flk.BundleRecord {
			t.Fatalf("%s: VerifyBundle = %v, want a %q BundleError", name, err, flk.BundleRecord)
		}
	}
}
