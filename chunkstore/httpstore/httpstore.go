package httpstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// Defaults for the zero values of Options.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultStallTimeout    = 10 * time.Second
	DefaultMaxAttempts     = 4
	DefaultBaseBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultMaxManifestSize = 64 << 20
)

// MaxChunkObjectSize bounds the body of a chunk object (chunkstore.MaxChunkObjectSize).
const MaxChunkObjectSize = chunkstore.MaxChunkObjectSize

const userAgent = "basefs-httpstore/1"

// Options configure New. The zero value gives the defaults.
type Options struct {
	// Client sends the requests; nil means a client of the store's own (the default transport's
	// settings, more idle connections per host). Its own Timeout, if any, applies on top of ours.
	Client *http.Client
	// Timeout bounds one attempt, from sending the request to the last byte of the body
	// (default 30 s). Raise it for slow links with large chunks: a 16 MiB chunk must arrive
	// within it. Dead connections are caught sooner by StallTimeout.
	Timeout time.Duration
	// StallTimeout fails an attempt when no byte arrives for this long, waiting for the
	// response headers or within the body (default 10 s).
	StallTimeout time.Duration
	// MaxAttempts bounds the attempts per call, the first included (default 4; 1: no retry).
	MaxAttempts int
	// BaseBackoff is the wait before the second attempt; it doubles for each later one, with
	// jitter (default 100 ms).
	BaseBackoff time.Duration
	// MaxBackoff caps the wait between attempts, Retry-After included (default 5 s).
	MaxBackoff time.Duration
	// MaxManifestSize bounds a manifest's body (default 64 MiB).
	MaxManifestSize int64
	// Logger receives retries (Info) and corrupt bodies (Warn); nil logs nothing.
	Logger *slog.Logger
}

// Store reads a published directory over HTTP(S). It is read-only, immutable and safe for
// concurrent use.
type Store struct {
	base   string // scheme://host[:port][/path], no trailing slash
	client *http.Client
	opts   Options // with defaults applied
	log    *slog.Logger
}

var _ chunkstore.Getter = (*Store)(nil)

// New returns a store reading the layout under baseURL, e.g. "https://mirror.example/basefs".
// The URL must be http or https, with a host, without credentials, query or fragment. Nothing
// is requested until the first read.
func New(baseURL string, opts Options) (*Store, error) {
	base, err := parseBase(baseURL)
	if err != nil {
		return nil, err
	}
	for _, o := range []struct {
		name string
		v    time.Duration
		p    *time.Duration
		def  time.Duration
	}{
		{"Timeout", opts.Timeout, &opts.Timeout, DefaultTimeout},
		{"StallTimeout", opts.StallTimeout, &opts.StallTimeout, DefaultStallTimeout},
		{"BaseBackoff", opts.BaseBackoff, &opts.BaseBackoff, DefaultBaseBackoff},
		{"MaxBackoff", opts.MaxBackoff, &opts.MaxBackoff, DefaultMaxBackoff},
	} {
		if o.v < 0 {
			return nil, fmt.Errorf("httpstore %s: Options.%s is negative (%v); use 0 for the default", base, o.name, o.v)
		}
		if o.v == 0 {
			*o.p = o.def
		}
	}
	if opts.MaxAttempts < 0 || opts.MaxManifestSize < 0 {
		return nil, fmt.Errorf("httpstore %s: Options.MaxAttempts (%d) and MaxManifestSize (%d) must not be negative; use 0 for the default", base, opts.MaxAttempts, opts.MaxManifestSize)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxManifestSize == 0 {
		opts.MaxManifestSize = DefaultMaxManifestSize
	}
	s := &Store{base: base, client: opts.Client, opts: opts, log: opts.Logger}
	if s.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32 // chunk fetches run in parallel; the default 2 churns connections
		s.client = &http.Client{Transport: tr, CheckRedirect: httpx.SameOrigin("httpstore " + base)}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// parseBase validates a base URL and returns it without a trailing slash.
func parseBase(raw string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("httpstore: base URL %q: %s", httpx.Redact(raw), why)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", bad(err.Error())
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if u.Scheme == "" {
			return "", bad("no scheme; want http://host/path or https://host/path")
		}
		return "", bad(fmt.Sprintf("scheme %q is not supported; want http:// or https://", u.Scheme))
	case u.Opaque != "":
		return "", bad("want http://host/path or https://host/path")
	case u.Host == "" || u.Hostname() == "":
		return "", bad("no host")
	case u.User != nil:
		return "", bad("credentials in the URL are not supported (they would show in logs); use Options.Client")
	case u.RawQuery != "" || u.ForceQuery:
		return "", bad("a query is not allowed: objects are found by path under the base")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", bad("a fragment is not allowed")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u.String(), nil
}

// String returns the base URL.
func (s *Store) String() string { return s.base }

// ChunkURL returns the URL of chunk d's object.
func (s *Store) ChunkURL(d chunkstore.Digest) string {
	h := d.String()
	return s.base + "/chunks/" + h[:2] + "/" + h
}

// ManifestURL returns the URL of manifest d.
func (s *Store) ManifestURL(d chunkstore.Digest) string {
	return s.base + "/manifests/" + d.String()
}

// GetChunk fetches chunk d and verifies it.
func (s *Store) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	u := s.ChunkURL(d)
	var c *chunkstore.Chunk
	err := s.do(ctx, http.MethodGet, "chunk", d, u, MaxChunkObjectSize, func(b []byte) (bool, error) {
		var err error
		c, err = chunkstore.DecodeChunk(d, b, u)
		return true, err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// GetManifest fetches manifest d; it is accepted only if it hashes to d and parses strictly.
func (s *Store) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	u := s.ManifestURL(d)
	var m *chunkstore.Manifest
	err := s.do(ctx, http.MethodGet, "manifest", d, u, s.opts.MaxManifestSize, func(b []byte) (bool, error) {
		var retry bool
		var err error
		m, retry, err = chunkstore.FetchedManifest(d, b, u)
		return retry, err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// HasChunk reports whether the server has chunk d's object (HEAD; it is not read or verified).
func (s *Store) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.has(ctx, "chunk", d, s.ChunkURL(d))
}

// HasManifest reports whether the server has manifest d (HEAD; it is not read or verified).
func (s *Store) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.has(ctx, "manifest", d, s.ManifestURL(d))
}

func (s *Store) has(ctx context.Context, kind string, d chunkstore.Digest, u string) (bool, error) {
	err := s.do(ctx, http.MethodHead, kind, d, u, 0, nil)
	if err == nil {
		return true, nil
	}
	if chunkstore.IsNotFound(err) {
		return false, nil
	}
	return false, err
}

// decoder turns a 200 body into the object. Its error says what is wrong with the bytes;
// retry says whether another request may give other bytes (see "Corruption policy").
type decoder func(body []byte) (retry bool, err error)

// do runs the attempts of one call: GET with decode, or HEAD with decode nil (httpx.Do). Bad
// bytes are asked for once more, past any cache (Cache-Control: no-cache); a missing object,
// a permanent failure or the end of ctx stop at once.
func (s *Store) do(ctx context.Context, method, kind string, d chunkstore.Digest, u string, limit int64, decode decoder) error {
	corrupt := 0
	policy := httpx.Policy{Attempts: s.opts.MaxAttempts, Base: s.opts.BaseBackoff, Max: s.opts.MaxBackoff}
	n, canceled, err := httpx.Do(ctx, policy, func(ctx context.Context, attempt int) error {
		body, err := s.attempt(ctx, method, u, limit, corrupt > 0)
		var tl *httpx.TooLargeError
		switch {
		case err == nil && decode == nil:
			return nil
		case err == nil:
			retry, err := decode(body)
			if err != nil {
				return &badBytesError{err: err, retry: retry}
			}
			return nil
		case errors.As(err, &tl):
			// A body that cannot be the object: bad bytes, under the corruption policy.
			return &badBytesError{err: &chunkstore.CorruptError{Kind: kind, Digest: d, Where: u, Err: err}, retry: true}
		}
		return err
	}, func(err error) httpx.Verdict {
		var bb *badBytesError
		if errors.As(err, &bb) {
			corrupt++
			s.log.LogAttrs(ctx, slog.LevelWarn, "origin returned bad bytes", slog.String("kind", kind),
				slog.String("digest", d.Short()), slog.String("url", u), slog.Int("attempt", corrupt), slog.Any("err", bb.err))
			if !bb.retry || corrupt > 1 {
				return httpx.Stop
			}
			return httpx.Retry
		}
		if errors.Is(err, chunkstore.ErrNotFound) || !IsTransient(err) {
			return httpx.Stop
		}
		return httpx.Retry
	}, retryAfter, func(a httpx.Attempt) {
		s.log.LogAttrs(ctx, slog.LevelInfo, "origin request failed; retrying", slog.String("kind", kind),
			slog.String("digest", d.Short()), slog.String("url", u), slog.Int("attempt", a.N),
			slog.Duration("wait", a.Wait), slog.Any("err", a.Err))
	})
	var bb *badBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &bb):
		return bb.err
	case errors.Is(err, chunkstore.ErrNotFound):
		return fmt.Errorf("%s %s at %s: %w", kind, d.Short(), u, chunkstore.ErrNotFound)
	case canceled:
		return &canceledError{kind: kind, digest: d, method: method, url: u, attempts: n, ctxErr: ctx.Err(), last: err}
	case !IsTransient(err):
		return fmt.Errorf("%s %s: %s %s: %w (permanent; not retried)", kind, d.Short(), method, u, err)
	}
	return &exhaustedError{kind: kind, digest: d, method: method, url: u, attempts: n, err: err}
}

// badBytesError is an answer whose bytes are not the object (retry: worth asking once more).
type badBytesError struct {
	err   error
	retry bool
}

func (e *badBytesError) Error() string { return e.err.Error() }

// retryAfter is the wait a 503 or 429 asked for.
func retryAfter(err error) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

// attempt sends one request. For GET it returns the body, read whole within limit.
func (s *Store) attempt(ctx context.Context, method, u string, limit int64, noCache bool) ([]byte, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	actx, cancelTimeout := context.WithTimeoutCause(actx, s.opts.Timeout, &timeoutError{s.opts.Timeout})
	defer cancelTimeout()
	stall := httpx.NewStall(s.opts.StallTimeout, func() { cancel(&stallError{s.opts.StallTimeout}) })
	defer stall.Stop()

	req, err := http.NewRequestWithContext(actx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	if noCache {
		req.Header.Set("Cache-Control", "no-cache")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, attemptError(actx, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // lets the connection be reused
		return nil, chunkstore.ErrNotFound
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &statusError{code: resp.StatusCode, status: resp.Status, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	}
	if method == http.MethodHead {
		return nil, nil
	}
	body, err := httpx.ReadBody(stall.Reader(resp.Body), resp.ContentLength, limit)
	var tl *httpx.TooLargeError
	if err != nil && !errors.As(err, &tl) {
		return nil, attemptError(actx, err)
	}
	return body, err
}

// attemptError names the real cause of a failed attempt: a stall or the attempt's timeout
// show up as a cancelled request; a *url.Error repeats the URL the caller names anyway.
func attemptError(actx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	cause := context.Cause(actx)
	var st *stallError
	var to *timeoutError
	if errors.As(cause, &st) || errors.As(cause, &to) {
		return cause
	}
	return err
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
