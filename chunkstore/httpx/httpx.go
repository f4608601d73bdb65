package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Policy says how often a request is tried: Attempts in all, waiting Base·2^(n-1) after the
// n-th failure, at most Max, with jitter.
type Policy struct {
	Attempts  int
	Base, Max time.Duration
}

// Backoff returns the wait after the attempt-th failure (from 1): Base·2^(attempt-1) capped at
// Max, jittered in [d/2, d] so that many hosts do not retry in step; a server's hint
// (Retry-After) lengthens it, still capped at Max.
func (p Policy) Backoff(attempt int, hint time.Duration) time.Duration {
	d := p.Max
	if shift := attempt - 1; shift < 30 && p.Base<<shift < d && p.Base<<shift > 0 {
		d = p.Base << shift
	}
	d = d/2 + rand.N(d/2+1)
	if hint > d {
		d = min(hint, p.Max)
	}
	return d
}

// Verdict is what the caller's classifier says of a failed attempt.
type Verdict int

const (
	// Retry: transient; try again if attempts are left.
	Retry Verdict = iota
	// Stop: permanent (or decided otherwise): return this error now.
	Stop
)

// Attempt is one failed try as Do reports it to OnRetry.
type Attempt struct {
	N    int
	Wait time.Duration
	Err  error
}

// Do runs op until it succeeds, classify says Stop, Attempts are used up, or ctx ends (while
// waiting or after an attempt). It returns how many attempts ran, whether ctx ended it, and
// the last error. hint, when set, gives a server's wait (Retry-After) for an error; onRetry,
// when set, is told of each retry before its wait.
func Do(ctx context.Context, p Policy, op func(ctx context.Context, attempt int) error,
	classify func(error) Verdict, hint func(error) time.Duration, onRetry func(Attempt)) (n int, canceled bool, err error) {
	for attempt := 1; ; attempt++ {
		err = op(ctx, attempt)
		if err == nil {
			return attempt, false, nil
		}
		if classify(err) == Stop {
			return attempt, false, err
		}
		if ctx.Err() != nil {
			return attempt, true, err
		}
		if attempt >= p.Attempts {
			return attempt, false, err
		}
		var h time.Duration
		if hint != nil {
			h = hint(err)
		}
		wait := p.Backoff(attempt, h)
		if onRetry != nil {
			onRetry(Attempt{N: attempt, Wait: wait, Err: err})
		}
		if Sleep(ctx, wait) != nil {
			return attempt, true, err
		}
	}
}

// Sleep waits d, or until ctx ends (its error). A d ≤ 0 does not wait: it returns ctx's error
// at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TransientStatus reports whether an HTTP status is worth another try: 5xx, 429, 408.
func TransientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// Transient classifies a failure below HTTP: a refused or reset connection, a timeout, a
// temporary DNS failure, a body cut short are transient; a server that is not who it should be
// or speaks no TLS, an unknown host, and the end of the caller's context (Canceled) are not.
// ok is false when err is none of these (the caller decides: a status, a decoding error).
func Transient(err error) (transient, ok bool) {
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
	case errors.Is(err, context.Canceled):
		return false, true
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &he), errors.As(err, &rh):
		return false, true // retrying cannot help
	case errors.As(err, &dns):
		return !dns.IsNotFound, true
	case errors.Is(err, context.DeadlineExceeded):
		return true, true // an attempt's timeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true, true // closed early or cut short
	case errors.As(err, &op), errors.As(err, &en):
		return true, true // refused, reset, unreachable, ...
	case errors.As(err, &ne) && ne.Timeout():
		return true, true
	}
	return false, false
}

// Stall fails a transfer that receives nothing for a while: its timer calls stalled (which
// cancels the request) unless the reader it wraps keeps receiving bytes.
type Stall struct {
	t *time.Timer
	d time.Duration
}

// NewStall arms a stall timer of d that calls stalled when it runs out.
func NewStall(d time.Duration, stalled func()) *Stall {
	return &Stall{t: time.AfterFunc(d, stalled), d: d}
}

// Reader wraps r: every read that brings bytes re-arms the timer.
func (s *Stall) Reader(r io.Reader) io.Reader { return stallReader{r, s} }

// Stop disarms the timer.
func (s *Stall) Stop() { s.t.Stop() }

type stallReader struct {
	r io.Reader
	s *Stall
}

func (r stallReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.s.t.Reset(r.s.d)
	}
	return n, err
}

// TooLargeError is a body larger than the object it should be can be.
type TooLargeError struct {
	Limit, Size int64 // Size -1: not declared, found by reading
}

func (e *TooLargeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("the body is more than the limit of %d bytes; refused", e.Limit)
	}
	return fmt.Sprintf("the body is %d bytes, more than the limit of %d; refused unread", e.Size, e.Limit)
}

// ReadBody reads a whole body of declared length size (-1: not declared) that may not exceed
// limit bytes, without ever holding more than limit+1 of them.
func ReadBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, &TooLargeError{Limit: limit, Size: size}
	}
	if size >= 0 {
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("reading the body: %w", err)
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, &TooLargeError{Limit: limit, Size: -1}
	}
	return body, nil
}

// Redact returns URL raw as given, but with the userinfo of its authority (what stands
// before an '@' between "//" and the path) replaced by "xxxxx", for errors and logs. It works
// on the text, so a URL that does not parse is shown as written, minus any credentials.
func Redact(raw string) string {
	i := strings.Index(raw, "//")
	if i < 0 {
		return raw
	}
	auth := raw[i+2:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return raw
	}
	return raw[:i+2] + "xxxxx" + raw[i+2+at:]
}

// MaxRedirects bounds the redirects one request follows (SameOrigin).
const MaxRedirects = 5

// SameOrigin is an http.Client's CheckRedirect that follows a redirect only within the scheme
// and host the request was first sent to (a server moving its objects), at most MaxRedirects
// times, never to another host: a client's requests — and the credentials on them, such as
// a Keystone token in X-Auth-Token, which net/http does not strip — must not be sent wherever
// the server says (an internal address, a metadata service), and an answer from elsewhere is
// no answer of this origin. who names the client in the error.
func SameOrigin(who string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= MaxRedirects {
			return fmt.Errorf("%s: more than %d redirects", who, MaxRedirects)
		}
		if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
			return fmt.Errorf("%s: redirect to %s://%s refused: only the origin's own scheme and host are followed", who, req.URL.Scheme, req.URL.Host)
		}
		return nil
	}
}
