package flk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponseBytes caps how much of a response is read: outcomes are small,
// and a misbehaving proxy must not make the client buffer without limit.
const maxResponseBytes = 1 << 20

// Client talks to an FLK gateway. It is safe for concurrent use.
type Client struct {
	// baseURL is the gateway root, e.g. https://flk.example.com.
	baseURL *url.URL
	// tenant is sent as X-Tenant-Id; "" sends no header (the default tenant).
	tenant string
	// httpClient performs requests; its Timeout bounds each attempt.
	httpClient *http.Client
	// maxRetries is how many times a retryable failure is repeated.
	maxRetries int
	// backoffBase and backoffMax shape the exponential backoff.
	backoffBase, backoffMax time.Duration
	// sleep waits between attempts; replaced in tests so they do not wait.
	sleep func(context.Context, time.Duration) error
	// jitter draws the random part of the backoff.
	jitter func(time.Duration) time.Duration
	// now reads the clock, for Retry-After dates.
	now func() time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithTenant sets the tenant sent in X-Tenant-Id. Without it the gateway
// uses the tenant "default".
func WithTenant(tenant string) Option { return func(c *Client) { c.tenant = tenant } }

// WithTimeout bounds each HTTP attempt (default 10s). The whole call,
// retries included, is bounded by the context passed to it.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.httpClient.Timeout = d }
}

// WithMaxRetries sets how many times a retryable failure (429, 5xx, network
// error) is retried after the first attempt (default 3; 0 disables retries).
func WithMaxRetries(n int) Option {
	return func(c *Client) {
		if n < 0 {
			n = 0
		}
		c.maxRetries = n
	}
}

// WithBackoff sets the first backoff ceiling and its cap (defaults 200ms and
// 10s); the ceiling doubles on each retry.
func WithBackoff(base, max time.Duration) Option {
	return func(c *Client) { c.backoffBase, c.backoffMax = base, max }
}

// WithHTTPClient replaces the HTTP client (for custom transports, TLS or
// proxies). A later WithTimeout sets its Timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		copied := *hc
		c.httpClient = &copied
	}
}

// WithSleep replaces the wait between attempts. Tests use it to record the
// backoff instead of waiting; it must return ctx.Err() when ctx ends.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = sleep }
}

// NewClient returns a client for the gateway at baseURL.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("flk: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("flk: base URL %q must be http(s)://host[:port][/path]", baseURL)
	}
	c := &Client{
		baseURL:     u,
		httpClient:  &http.Client{Timeout: 10 * time.Second},
		maxRetries:  3,
		backoffBase: 200 * time.Millisecond,
		backoffMax:  10 * time.Second,
		sleep:       sleepContext,
		jitter:      fullJitter,
		now:         time.Now,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// ResultKind classifies a submission's answer.
type ResultKind int

const (
	// Accepted: verified, accepted and not escalated (HTTP 200).
	Accepted ResultKind = iota + 1
	// Escalated: accepted but flagged for review (HTTP 202).
	Escalated
	// Rejected: not accepted, which the contract also marks escalated (HTTP 202).
	Rejected
	// Conflict: the pcs_id was already decided with different signed fields
	// (HTTP 409); Decision holds that first outcome.
	Conflict
)

func (k ResultKind) String() string {
	switch k {
	case Accepted:
		return "accepted"
	case Escalated:
		return "escalated"
	case Rejected:
		return "rejected"
	case Conflict:
		return "conflict"
	}
	return fmt.Sprintf("ResultKind(%d)", int(k))
}

// Decision is an outcome as the gateway reports it: the verification
// outcome plus the server's bookkeeping fields, when sent.
type Decision struct {
	Outcome
	// PcsID is the decided record's id.
	PcsID string `json:"pcs_id,omitempty"`
	// FirstSeenAt is when the first submission of the id was received.
	FirstSeenAt string `json:"first_seen_at,omitempty"`
	// Region is the region that decided.
	Region string `json:"region,omitempty"`
	// AuditSeq is the decision's position in the audit log.
	AuditSeq *int64 `json:"audit_seq,omitempty"`
	// Status is the HTTP status the first submission of the id got (200 or
	// 202), as Lookup reports it; zero in a Submit answer, whose
	// SubmitResult.StatusCode says it.
	Status int `json:"-"`
	// Raw is the body as received, for fields this SDK does not know yet.
	Raw json.RawMessage `json:"-"`
}

// SubmitResult is the gateway's answer to a submission.
type SubmitResult struct {
	// Kind classifies the answer.
	Kind ResultKind
	// Decision is the outcome; for Conflict, the first decision of the id.
	Decision Decision
	// StatusCode is the HTTP status (200, 202 or 409).
	StatusCode int
	// Replayed is true for a duplicate: the same record was decided before
	// and this is the stored outcome (header Idempotent-Replayed: true). It is
	// a flag rather than a Kind because a replay keeps its original Kind.
	Replayed bool
	// Attempts is the number of requests made, retries included.
	Attempts int
}

// Submit sends a PCS to POST /v1/pcs/submit. The record is encoded as JSON
// as-is: sign it first (PCS.SignHMAC, PCS.SignEd25519) when the tenant
// requires signatures. See SubmitRaw for the retry behaviour.
func (c *Client) Submit(ctx context.Context, pcs *PCS) (*SubmitResult, error) {
	body, err := json.Marshal(pcs)
	if err != nil {
		return nil, fmt.Errorf("flk: encode PCS: %w", err)
	}
	return c.SubmitRaw(ctx, body)
}

// SubmitRaw sends an already encoded PCS body, byte for byte.
//
// 429, 503, other 5xx answers and network errors are retried up to the
// configured count with exponential backoff and full jitter, waiting the
// server's Retry-After when it gives one; resending is safe because the
// gateway deduplicates by pcs_id. 400, 401, 403, 409, 413 and other
// answers are never retried. Verification outcomes and 409 come back as a
// *SubmitResult; failures as an *APIError, a *TransportError or the
// context's error.
func (c *Client) SubmitRaw(ctx context.Context, body []byte) (*SubmitResult, error) {
	resp, attempts, err := c.do(ctx, http.MethodPost, "/v1/pcs/submit", body)
	if err != nil {
		return nil, err
	}
	result := &SubmitResult{
		StatusCode: resp.status,
		Replayed:   strings.EqualFold(resp.header.Get("Idempotent-Replayed"), "true"),
		Attempts:   attempts,
	}
	switch resp.status {
	case http.StatusOK, http.StatusAccepted:
		if result.Decision, err = decodeDecision(resp.body); err != nil {
			return nil, unexpected(resp, err)
		}
		result.Kind = kindOf(result.Decision.Outcome)
	case http.StatusConflict:
		if result.Decision, err = decodeConflict(resp.body); err != nil {
			return nil, unexpected(resp, err)
		}
		result.Kind = Conflict
	default:
		return nil, apiError(resp, attempts)
	}
	return result, nil
}

// Lookup fetches the decision for a pcs_id (GET /v1/pcs/{pcs_id}), which is
// how a producer that wrote to Kafka directly learns its outcome. An id with
// no decision (yet) gives an error matching ErrNotFound. Retries as Submit.
func (c *Client) Lookup(ctx context.Context, pcsID string) (*Decision, error) {
	resp, attempts, err := c.do(ctx, http.MethodGet, "/v1/pcs/"+url.PathEscape(pcsID), nil)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, apiError(resp, attempts)
	}
	d, err := decodeLookup(resp.body)
	if err != nil {
		return nil, unexpected(resp, err)
	}
	return &d, nil
}

// decodeLookup reads a lookup body. The gateway wraps the stored outcome:
// {"pcs_id", "tenant", "status", "outcome": {...}, ...}; Raw keeps the whole
// body. A bare outcome at the top level is read too.
func decodeLookup(body []byte) (Decision, error) {
	var wrapper struct {
		PcsID   string          `json:"pcs_id"`
		Status  int             `json:"status"`
		Outcome json.RawMessage `json:"outcome"`
	}
	if err := json.Unmarshal(body, &wrapper); err != nil {
		return Decision{}, err
	}
	if len(wrapper.Outcome) == 0 {
		return decodeDecision(body)
	}
	d, err := decodeDecision(wrapper.Outcome)
	if err != nil {
		return Decision{}, err
	}
	if d.PcsID == "" {
		d.PcsID = wrapper.PcsID
	}
	d.Status = wrapper.Status
	d.Raw = append(json.RawMessage(nil), body...)
	return d, nil
}

func kindOf(o Outcome) ResultKind {
	switch {
	case !o.Accepted:
		return Rejected
	case o.Escalated:
		return Escalated
	default:
		return Accepted
	}
}

// response is a fully read HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one logical request with retries and returns the final answer:
// either a non-retryable status or the last retryable one, in which case it
// is turned into an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body []byte) (*response, int, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, method, path, body)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, attempt + 1, ctxErr
		}
		var retryAfter time.Duration
		switch {
		case err != nil:
			lastErr = &TransportError{Err: err, Attempts: attempt + 1}
		case retryableStatus(resp.status):
			retryAfter = parseRetryAfter(resp.header.Get("Retry-After"), c.now())
			lastErr = apiError(resp, attempt+1)
		default:
			return resp, attempt + 1, nil
		}
		if attempt >= c.maxRetries {
			return nil, attempt + 1, lastErr
		}
		if err := c.sleep(ctx, c.backoffDelay(attempt, retryAfter)); err != nil {
			return nil, attempt + 1, err
		}
	}
}

// once makes a single HTTP request and reads its answer.
func (c *Client) once(ctx context.Context, method, path string, body []byte) (*response, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL.String()+path, reader)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "flk-sdk-go/"+SchemaVersion)
	if c.tenant != "" {
		req.Header.Set("X-Tenant-Id", c.tenant)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// apiError builds the error for a non-success answer from its JSON error
// body ({"error": code, "message": text}) when it has one.
func apiError(resp *response, attempts int) *APIError {
	e := &APIError{
		StatusCode: resp.status,
		Attempts:   attempts,
		RetryAfter: parseRetryAfter(resp.header.Get("Retry-After"), time.Now()),
	}
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(resp.body, &body) == nil {
		e.Code, e.Message = body.Error, body.Message
	} else if text := strings.TrimSpace(string(resp.body)); len(text) <= 200 {
		e.Message = text
	}
	return e
}

func unexpected(resp *response, err error) error {
	return fmt.Errorf("%w: HTTP %d body: %v", ErrUnexpectedResponse, resp.status, err)
}

// decodeDecision reads an outcome body; accepted and escalated are required
// because every outcome has them.
func decodeDecision(body []byte) (Decision, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return Decision{}, err
	}
	if _, ok := probe["accepted"]; !ok {
		return Decision{}, errors.New(`outcome without "accepted"`)
	}
	if _, ok := probe["escalated"]; !ok {
		return Decision{}, errors.New(`outcome without "escalated"`)
	}
	var d Decision
	if err := json.Unmarshal(body, &d); err != nil {
		return Decision{}, err
	}
	d.Raw = append(json.RawMessage(nil), body...)
	return d, nil
}

// decodeConflict reads a 409 body. The contract says it carries the first
// outcome but not where, so both an outcome at the top level and one nested
// under "first_outcome" or "outcome" (next to an error code) are read.
func decodeConflict(body []byte) (Decision, error) {
	if d, err := decodeDecision(body); err == nil {
		return d, nil
	}
	var wrapper map[string]json.RawMessage
	if err := json.Unmarshal(body, &wrapper); err != nil {
		return Decision{}, err
	}
	for _, key := range []string{"first_outcome", "outcome"} {
		if nested, ok := wrapper[key]; ok {
			d, err := decodeDecision(nested)
			if err == nil {
				d.Raw = append(json.RawMessage(nil), body...)
			}
			return d, err
		}
	}
	return Decision{}, errors.New("409 body carries no outcome")
}
