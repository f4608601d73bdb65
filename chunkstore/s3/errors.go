package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// ErrUnavailable is wrapped by the errors of calls made while the store is in its cooldown
// (the service failed every attempt of an earlier call) and by calls whose attempts ran out.
var ErrUnavailable = errors.New("s3 service unavailable")

// IsTransient reports whether err is a failure of the service or the network that a later
// request may not meet again (a refused or reset connection, a timeout, a 5xx, 429 or 408, a
// cooldown). Not found, corrupt, refused (403, …) and cancelled are not transient.
func IsTransient(err error) bool {
	if err == nil || chunkstore.IsNotFound(err) || chunkstore.IsCorrupt(err) ||
		errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, ErrUnavailable) || isTransient(err)
}

func statusOf(err error) int {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

func errorCode(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

func isNotFound(err error) bool {
	switch errorCode(err) {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return true
	}
	return statusOf(err) == http.StatusNotFound
}

// isTransient classifies one attempt's error.
func isTransient(err error) bool {
	if code := statusOf(err); code != 0 {
		return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout ||
			code == http.StatusConflict // a concurrent conditional write: asking again settles it
	}
	transient, _ := httpx.Transient(err)
	return transient
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.msg) }

// exhaustedError is a call whose every attempt failed transiently.
type exhaustedError struct {
	what     string
	attempts int
	err      error
}

func (e *exhaustedError) Error() string {
	return fmt.Sprintf("%s: giving up after %d attempts: %v", e.what, e.attempts, e.err)
}

func (e *exhaustedError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// unavailableError is a call refused at once during the cooldown.
type unavailableError struct {
	what  string
	until time.Time
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%s: not tried: the service failed recently; trying again after %s", e.what, e.until.Format("15:04:05.000"))
}

func (e *unavailableError) Unwrap() error { return ErrUnavailable }
