package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/basefs/basefs/chunkstore"
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
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		he  x509.HostnameError
		rh  tls.RecordHeaderError
		dns *net.DNSError
		op  *net.OpError
		en  syscall.Errno
		ne  net.Error
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &he), errors.As(err, &rh):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return true // the attempt's timeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	case errors.As(err, &op), errors.As(err, &en):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.msg) }

type tooLargeError struct{ limit, size int64 }

func (e *tooLargeError) Error() string {
	if e.size >= 0 {
		return fmt.Sprintf("the object is %d bytes, more than the limit of %d; refused unread", e.size, e.limit)
	}
	return fmt.Sprintf("the object is more than the limit of %d bytes; refused", e.limit)
}

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
