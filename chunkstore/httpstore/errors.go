package httpstore

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// IsTransient reports whether err is, or wraps, a failure of the network or the server that a
// later request may not meet again: a refused or reset connection, a timeout or stall, a short
// body, a 5xx, 429 or 408 response. The store has retried these already (an error it returns
// after its last attempt is transient); a caller may use IsTransient to tell an unhealthy origin
// from a missing object (chunkstore.IsNotFound), bad bytes (chunkstore.IsCorrupt), a refusal
// or the end of the caller's context (any other error), none of which is transient.
func IsTransient(err error) bool {
	var ce *canceledError
	if err == nil || errors.Is(err, chunkstore.ErrNotFound) || chunkstore.IsCorrupt(err) || errors.As(err, &ce) {
		return false
	}
	var (
		ee *exhaustedError
		se *statusError
		st *stallError
		to *timeoutError
	)
	switch {
	case errors.As(err, &ee), errors.As(err, &st), errors.As(err, &to):
		return true
	case errors.As(err, &se):
		return se.transient()
	}
	if transient, ok := httpx.Transient(err); ok {
		return transient
	}
	return false
}

// statusError is a response other than 200, 404 or 410.
type statusError struct {
	code       int
	status     string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	if e.status != "" {
		return "status " + e.status
	}
	return fmt.Sprintf("status %d", e.code)
}

func (e *statusError) transient() bool {
	return e.code >= 500 || e.code == http.StatusTooManyRequests || e.code == http.StatusRequestTimeout
}

// stallError fails an attempt during which no byte arrived for too long.
type stallError struct{ d time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("no data for %v (stall timeout)", e.d)
}

// timeoutError fails an attempt that took longer than Options.Timeout.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("the request took longer than %v (timeout)", e.d)
}

// exhaustedError is the result of a call whose every attempt failed transiently.
type exhaustedError struct {
	kind     string
	digest   chunkstore.Digest
	method   string
	url      string
	attempts int
	err      error // the last attempt's
}

func (e *exhaustedError) Error() string {
	return fmt.Sprintf("%s %s: %s %s: giving up after %d attempts: %v", e.kind, e.digest.Short(), e.method, e.url, e.attempts, e.err)
}

func (e *exhaustedError) Unwrap() error { return e.err }

// canceledError is the result of a call stopped by its context. It wraps ctx.Err(), not the
// last attempt's error, so errors.Is(err, context.Canceled) holds and IsTransient does not.
type canceledError struct {
	kind     string
	digest   chunkstore.Digest
	method   string
	url      string
	attempts int
	ctxErr   error
	last     error
}

func (e *canceledError) Error() string {
	return fmt.Sprintf("%s %s: %s %s: %v (after %d attempts; last error: %v)", e.kind, e.digest.Short(), e.method, e.url, e.ctxErr, e.attempts, e.last)
}

func (e *canceledError) Unwrap() error { return e.ctxErr }
