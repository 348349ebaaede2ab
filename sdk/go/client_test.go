package flk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// scripted is one canned answer of the fake gateway.
type scripted struct {
	status int
	body   string
	header map[string]string
}

// fakeGateway answers requests from a script, in order, and records them.
type fakeGateway struct {
	t        *testing.T
	mu       sync.Mutex
	script   []scripted
	requests []*http.Request
	bodies   []string
}

func newFakeGateway(t *testing.T, script ...scripted) (*fakeGateway, *httptest.Server) {
	g := &fakeGateway{t: t, script: script}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	g.requests = append(g.requests, r)
	g.bodies = append(g.bodies, string(body))
	if len(g.script) == 0 {
		g.t.Errorf("unexpected request %d: %s %s", len(g.requests), r.Method, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
		return
	}
	next := g.script[0]
	g.script = g.script[1:]
	for k, v := range next.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(next.status)
	io.WriteString(w, next.body)
}

func (g *fakeGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.requests)
}

// recordingSleep returns a sleep option that records waits without waiting,
// and the slice it records into.
func recordingSleep() (Option, *[]time.Duration) {
	var waits []time.Duration
	return WithSleep(func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}), &waits
}

func newTestClient(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic jitter: always the ceiling, so tests can check it.
	c.jitter = func(ceiling time.Duration) time.Duration { return ceiling }
	return c
}

const (
	acceptedBody  = `{"accepted":true,"escalated":false,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017,"pcs_id":"abc","region":"eu"}`
	escalatedBody = `{"accepted":true,"escalated":true,"recomputed_D_hat":1.0,"recomputed_budget":0.285,"reason":"regime mismatch: claimed=sticky, expected=mixed"}`
	rejectedBody  = `{"accepted":false,"escalated":true,"reason":"validation failed: pcs_id is required"}`
)

func TestSubmitSendsRecordWithTenant(t *testing.T) {
	g, srv := newFakeGateway(t, scripted{status: 200, body: acceptedBody})
	c := newTestClient(t, srv.URL+"/", WithTenant("acme"))
	p := loadGolden(t, "pcs_tiny_case_1.json")
	res, err := c.Submit(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != Accepted || res.StatusCode != 200 || res.Replayed || res.Attempts != 1 {
		t.Fatalf("result %+v", res)
	}
	if res.Decision.PcsID != "abc" || res.Decision.Region != "eu" || *res.Decision.RecomputedBudget != 0.317807017 {
		t.Fatalf("decision %+v", res.Decision)
	}
	r := g.requests[0]
	if r.Method != http.MethodPost || r.URL.Path != "/v1/pcs/submit" || r.Header.Get("X-Tenant-Id") != "acme" ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %v", r.Method, r.URL.Path, r.Header)
	}
	sent, err := DecodePCS([]byte(g.bodies[0]))
	if err != nil || string(sent.CanonicalPayload()) != string(p.CanonicalPayload()) || sent.Sig != p.Sig {
		t.Fatalf("sent body %s (%v)", g.bodies[0], err)
	}
}

func TestSubmitWithoutTenantSendsNoHeader(t *testing.T) {
	g, srv := newFakeGateway(t, scripted{status: 200, body: acceptedBody})
	c := newTestClient(t, srv.URL)
	if _, err := c.SubmitRaw(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.requests[0].Header["X-Tenant-Id"]; ok {
		t.Fatal("X-Tenant-Id sent without a tenant")
	}
	if g.bodies[0] != `{}` {
		t.Fatalf("SubmitRaw changed the body: %q", g.bodies[0])
	}
}

func TestSubmitClassifiesOutcomes(t *testing.T) {
	cases := []struct {
		name     string
		answer   scripted
		kind     ResultKind
		replayed bool
	}{
		{"accepted", scripted{status: 200, body: acceptedBody}, Accepted, false},
		{"escalated", scripted{status: 202, body: escalatedBody}, Escalated, false},
		{"rejected", scripted{status: 202, body: rejectedBody}, Rejected, false},
		{"replay", scripted{status: 202, body: escalatedBody, header: map[string]string{"Idempotent-Replayed": "true"}}, Escalated, true},
		{"conflict top-level", scripted{status: 409, body: acceptedBody}, Conflict, false},
		{"conflict nested", scripted{status: 409, body: `{"error":"conflict","message":"different record","first_outcome":` + escalatedBody + `}`}, Conflict, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, srv := newFakeGateway(t, c.answer)
			sleep, waits := recordingSleep()
			client := newTestClient(t, srv.URL, sleep)
			res, err := client.SubmitRaw(context.Background(), []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != c.kind || res.Replayed != c.replayed || res.StatusCode != c.answer.status {
				t.Fatalf("result kind %v replayed %v status %d", res.Kind, res.Replayed, res.StatusCode)
			}
			if g.count() != 1 || len(*waits) != 0 {
				t.Fatalf("%d requests, waits %v: outcomes must not be retried", g.count(), *waits)
			}
			if c.kind == Conflict && res.Decision.Reason == "" && !res.Decision.Accepted {
				t.Fatalf("conflict lost the first outcome: %+v", res.Decision)
			}
		})
	}
}

func TestSubmitNeverRetriesClientErrors(t *testing.T) {
	cases := []struct {
		status int
		want   error
	}{
		{400, ErrBadRequest}, {401, ErrUnauthorized}, {403, ErrForbidden},
		{413, ErrPayloadTooLarge}, {404, ErrNotFound}, {418, ErrUnexpectedResponse},
	}
	for _, c := range cases {
		g, srv := newFakeGateway(t, scripted{status: c.status, body: `{"error":"bad_thing","message":"explained"}`})
		sleep, waits := recordingSleep()
		client := newTestClient(t, srv.URL, sleep, WithMaxRetries(5))
		_, err := client.SubmitRaw(context.Background(), []byte(`{}`))
		var apiErr *APIError
		if !errors.Is(err, c.want) || !errors.As(err, &apiErr) {
			t.Fatalf("status %d: error %v, want %v", c.status, err, c.want)
		}
		if apiErr.Code != "bad_thing" || apiErr.Message != "explained" || apiErr.Retryable() {
			t.Fatalf("status %d: %+v", c.status, apiErr)
		}
		if g.count() != 1 || len(*waits) != 0 {
			t.Fatalf("status %d retried: %d requests", c.status, g.count())
		}
	}
}

func TestSubmitRetriesWithBackoffThenSucceeds(t *testing.T) {
	g, srv := newFakeGateway(t,
		scripted{status: 503, body: `{"error":"log_unavailable","message":"kafka down"}`},
		scripted{status: 500},
		scripted{status: 502},
		scripted{status: 200, body: acceptedBody},
	)
	sleep, waits := recordingSleep()
	c := newTestClient(t, srv.URL, sleep, WithMaxRetries(3), WithBackoff(100*time.Millisecond, 250*time.Millisecond))
	res, err := c.SubmitRaw(context.Background(), []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != Accepted || res.Attempts != 4 || g.count() != 4 {
		t.Fatalf("result %+v after %d requests", res, g.count())
	}
	// Full jitter ceilings: base*2^n capped at max (the test's jitter returns the ceiling).
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond}
	if len(*waits) != len(want) {
		t.Fatalf("waits %v, want %v", *waits, want)
	}
	for i := range want {
		if (*waits)[i] != want[i] {
			t.Fatalf("waits %v, want %v", *waits, want)
		}
	}
	for i, b := range g.bodies {
		if b != `{"x":1}` {
			t.Fatalf("attempt %d sent %q", i, b)
		}
	}
}

func TestSubmitHonoursRetryAfter(t *testing.T) {
	_, srv := newFakeGateway(t,
		scripted{status: 429, body: `{"error":"rate_limited","message":"slow down"}`, header: map[string]string{"Retry-After": "7"}},
		scripted{status: 503, header: map[string]string{"Retry-After": "2"}},
		scripted{status: 202, body: escalatedBody},
	)
	sleep, waits := recordingSleep()
	c := newTestClient(t, srv.URL, sleep)
	if _, err := c.SubmitRaw(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if len(*waits) != 2 || (*waits)[0] != 7*time.Second || (*waits)[1] != 2*time.Second {
		t.Fatalf("waits %v, want [7s 2s]", *waits)
	}
}

func TestSubmitGivesUpAfterMaxRetries(t *testing.T) {
	g, srv := newFakeGateway(t,
		scripted{status: 429, header: map[string]string{"Retry-After": "1"}},
		scripted{status: 429, header: map[string]string{"Retry-After": "1"}},
		scripted{status: 429, body: `{"error":"quota","message":"monthly quota"}`, header: map[string]string{"Retry-After": "30"}},
	)
	sleep, waits := recordingSleep()
	c := newTestClient(t, srv.URL, sleep, WithMaxRetries(2))
	_, err := c.SubmitRaw(context.Background(), []byte(`{}`))
	var apiErr *APIError
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &apiErr) {
		t.Fatalf("error %v", err)
	}
	if apiErr.Attempts != 3 || apiErr.RetryAfter != 30*time.Second || apiErr.Code != "quota" || !apiErr.Retryable() {
		t.Fatalf("last error %+v", apiErr)
	}
	if g.count() != 3 || len(*waits) != 2 {
		t.Fatalf("%d requests, %d waits", g.count(), len(*waits))
	}
}

func TestSubmitRetriesNetworkErrors(t *testing.T) {
	// A listener that accepts and immediately closes: every attempt fails
	// at the transport level.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted sync.WaitGroup
	accepted.Add(1)
	go func() {
		defer accepted.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	sleep, waits := recordingSleep()
	c := newTestClient(t, "http://"+ln.Addr().String(), sleep, WithMaxRetries(2))
	_, err = c.SubmitRaw(context.Background(), []byte(`{}`))
	var te *TransportError
	if !errors.As(err, &te) || te.Attempts != 3 || len(*waits) != 2 {
		t.Fatalf("error %v, waits %v", err, *waits)
	}
	ln.Close()
	accepted.Wait()
}

func TestSubmitStopsWhenContextEnds(t *testing.T) {
	g, srv := newFakeGateway(t, scripted{status: 503}, scripted{status: 503})
	ctx, cancel := context.WithCancel(context.Background())
	c := newTestClient(t, srv.URL, WithSleep(func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}))
	_, err := c.SubmitRaw(ctx, []byte(`{}`))
	if !errors.Is(err, context.Canceled) || g.count() != 1 {
		t.Fatalf("error %v after %d requests", err, g.count())
	}
}

func TestRealSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepContext = %v", err)
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	c, err := NewClient("http://127.0.0.1:1", WithBackoff(time.Second, 8*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 40; attempt++ {
		ceiling := min(time.Second<<min(attempt, 30), 8*time.Second)
		for range 50 {
			if d := c.backoffDelay(attempt, 0); d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, ceiling)
			}
		}
	}
	if d := c.backoffDelay(0, 3*time.Second); d != 3*time.Second {
		t.Fatalf("Retry-After ignored: %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 19, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"5": 5 * time.Second, " 1 ": time.Second, "0": 0, "-3": 0, "soon": 0, "": 0,
		"Sun, 19 Jan 2025 12:00:10 GMT": 10 * time.Second,
		"Sun, 19 Jan 2025 11:00:00 GMT": 0,
		"999999999":                     24 * time.Hour,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestLookup(t *testing.T) {
	g, srv := newFakeGateway(t,
		scripted{status: 503},
		scripted{status: 200, body: `{"accepted":true,"escalated":false,"pcs_id":"a/b","first_seen_at":"2025-01-19T12:00:00Z","audit_seq":7}`},
		scripted{status: 404, body: `{"error":"not_found","message":"no decision"}`},
	)
	sleep, _ := recordingSleep()
	c := newTestClient(t, srv.URL, sleep, WithTenant("t1"))
	d, err := c.Lookup(context.Background(), "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Accepted || d.PcsID != "a/b" || d.AuditSeq == nil || *d.AuditSeq != 7 || d.FirstSeenAt == "" {
		t.Fatalf("decision %+v", d)
	}
	var raw map[string]any
	if json.Unmarshal(d.Raw, &raw) != nil || raw["audit_seq"] != 7.0 {
		t.Fatalf("raw body %s", d.Raw)
	}
	r := g.requests[1]
	if r.Method != http.MethodGet || r.URL.EscapedPath() != "/v1/pcs/a%2Fb" || r.Header.Get("X-Tenant-Id") != "t1" {
		t.Fatalf("request %s %s", r.Method, r.URL.EscapedPath())
	}
	if _, err := c.Lookup(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing id: %v", err)
	}
}

func TestLookupUnwrapsTheGatewayEnvelope(t *testing.T) {
	// What flk serve answers: the stored outcome under "outcome", bookkeeping beside it.
	_, srv := newFakeGateway(t,
		scripted{status: 200, body: `{"outcome":{"accepted":true,"escalated":true,"reason":"r","recomputed_D_hat":0.5},` +
			`"pcs_id":"p1","source":"cache","status":202,"tenant":"default","tier":"hot"}`},
		scripted{status: 200, body: `{"pcs_id":"p1","status":200}`},
	)
	c := newTestClient(t, srv.URL)
	d, err := c.Lookup(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Accepted || !d.Escalated || d.Reason != "r" || d.PcsID != "p1" || d.Status != 202 {
		t.Fatalf("decision %+v", d)
	}
	var raw map[string]any
	if json.Unmarshal(d.Raw, &raw) != nil || raw["tenant"] != "default" {
		t.Fatalf("raw body %s", d.Raw)
	}
	if _, err := c.Lookup(context.Background(), "p1"); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("envelope without an outcome: %v", err)
	}
}

func TestSubmitRejectsUndecodableOutcome(t *testing.T) {
	_, srv := newFakeGateway(t, scripted{status: 200, body: `not json`}, scripted{status: 202, body: `{"reason":"x"}`})
	c := newTestClient(t, srv.URL)
	for range 2 {
		if _, err := c.SubmitRaw(context.Background(), []byte(`{}`)); !errors.Is(err, ErrUnexpectedResponse) {
			t.Fatalf("error %v", err)
		}
	}
}

func TestNewClientRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "://x"} {
		if _, err := NewClient(u); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}

func TestResultKindString(t *testing.T) {
	if Accepted.String() != "accepted" || Conflict.String() != "conflict" || ResultKind(9).String() != "ResultKind(9)" {
		t.Fatal("ResultKind names")
	}
}
