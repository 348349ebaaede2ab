package flk

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors for errors.Is, one per thing a caller does differently.
// An *APIError matches the sentinel of its status code.
var (
	// ErrBadRequest (400): the body is malformed; fix the record, never retry.
	ErrBadRequest = errors.New("flk: bad request")
	// ErrUnauthorized (401): the signature is missing or invalid for the tenant.
	ErrUnauthorized = errors.New("flk: unauthorized")
	// ErrForbidden (403): the tenant is unknown or disabled.
	ErrForbidden = errors.New("flk: forbidden")
	// ErrNotFound (404): no decision is known for the pcs_id (Lookup).
	ErrNotFound = errors.New("flk: not found")
	// ErrPayloadTooLarge (413): the body is over the server's limit.
	ErrPayloadTooLarge = errors.New("flk: payload too large")
	// ErrRateLimited (429): the tenant's rate limit or quota; retried.
	ErrRateLimited = errors.New("flk: rate limited")
	// ErrUnavailable (503): a server dependency is down; retried, and safe to
	// retry later because submissions are idempotent per pcs_id.
	ErrUnavailable = errors.New("flk: service unavailable")
	// ErrServer (other 5xx): a server fault; retried.
	ErrServer = errors.New("flk: server error")
	// ErrUnexpectedResponse: a status or body the contract does not define.
	ErrUnexpectedResponse = errors.New("flk: unexpected response")
)

// APIError is a non-success answer from the gateway. When retries ran out it
// is the last answer, and Attempts says how many requests were made.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the machine code from the error body ("error"), if any.
	Code string
	// Message is the human text from the error body ("message"), if any.
	Message string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// Attempts is the number of requests made, retries included.
	Attempts int
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("flk: HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return msg
}

// Is makes errors.Is(err, ErrRateLimited) and friends work on an *APIError.
func (e *APIError) Is(target error) bool {
	return target == sentinelFor(e.StatusCode)
}

// Retryable reports whether the same request may succeed later.
func (e *APIError) Retryable() bool {
	return retryableStatus(e.StatusCode)
}

func sentinelFor(status int) error {
	switch {
	case status == http.StatusBadRequest:
		return ErrBadRequest
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusRequestEntityTooLarge:
		return ErrPayloadTooLarge
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status == http.StatusServiceUnavailable:
		return ErrUnavailable
	case status >= 500:
		return ErrServer
	default:
		return ErrUnexpectedResponse
	}
}

// TransportError is a failure to get any HTTP answer (connection refused,
// reset, per-attempt timeout) after all retries.
type TransportError struct {
	// Err is the last network error.
	Err error
	// Attempts is the number of requests made, retries included.
	Attempts int
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("flk: transport error after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap exposes the network error (for example a *net.OpError).
func (e *TransportError) Unwrap() error { return e.Err }
