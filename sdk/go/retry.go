package flk

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryableStatus says which answers are worth repeating: rate limits and
// server-side failures. Everything else (400, 401, 403, 409, 413, ...) would
// get the same answer again, so it is returned at once.
func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// backoffDelay is the wait before retry number attempt (0 for the first
// retry). The server's Retry-After wins when given, because it knows when
// capacity returns; otherwise "full jitter": uniform in [0, min(max,
// base*2^attempt)], which spreads a crowd of clients that failed together
// better than a fixed or equal-jitter schedule.
func (c *Client) backoffDelay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	ceiling := c.backoffMax
	if attempt < 30 {
		if d := c.backoffBase << attempt; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return c.jitter(ceiling)
}

// fullJitter returns a uniform random duration in [0, ceiling].
func fullJitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// sleepContext waits for d or until ctx ends, whichever is first.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// parseRetryAfter reads Retry-After as delta-seconds (what the gateway
// sends) or, for other proxies in the path, an HTTP date. Anything else is
// ignored, falling back to the client's own backoff.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}
