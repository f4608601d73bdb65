// Package origin opens the stores basefs reads from and publishes to by their URLs: dir://
// (a state or published directory), http(s):// (the same layout behind a web server) and
// s3:// (the shared tier).
package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/httpx"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/s3"
)

// Open opens an origin from its URL: dir:///path (a state or published directory),
// http(s)://host/path (the same layout behind a web server) or s3://bucket/prefix (the shared
// tier; endpoint and credentials from the AWS_* environment).
func Open(raw string) (chunkstore.Getter, error) {
	return OpenWith(context.Background(), raw, Options{})
}

// OpenWith is Open with options (S3 endpoint and region flags, a logger).
func OpenWith(ctx context.Context, raw string, o Options) (chunkstore.Getter, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // not the URL again: it may hold a password
		}
		return nil, fmt.Errorf("origin %q: %w", httpx.Redact(raw), err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("origin %q: credentials in the URL are refused (they would show in logs and status); use the store's own settings (AWS_* for s3://)", u.Redacted())
	}
	switch u.Scheme {
	case "dir":
		p, err := dirPath(raw)
		if err != nil {
			return nil, fmt.Errorf("origin %q: %w", raw, err)
		}
		s, err := local.Open(p, local.Options{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("origin %q: %w", raw, err)
		}
		return s, nil
	case "http", "https":
		s, err := httpstore.New(raw, httpstore.Options{Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "s3":
		t, err := openS3(ctx, raw, o, false)
		if err != nil {
			return nil, fmt.Errorf("origin %w", err)
		}
		return t, nil
	default:
		return nil, fmt.Errorf("origin %q: unknown scheme %q (want dir://, http://, https:// or s3://)", u.Redacted(), u.Scheme)
	}
}

// dirPath returns the absolute path of a dir:///path URL.
func dirPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "dir" || u.Host != "" || len(u.Path) < 2 || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want dir:///absolute/path")
	}
	return u.Path, nil
}

// Options configure OpenWith and OpenTarget.
type Options struct {
	// S3Endpoint and S3Region override AWS_ENDPOINT_URL(_S3) and AWS_REGION for s3:// URLs.
	S3Endpoint, S3Region string
	// Logger receives the stores' retries and bad objects (nil: discard).
	Logger *slog.Logger
}

func openS3(ctx context.Context, raw string, o Options, create bool) (*s3.Store, error) {
	cfg, err := s3.ConfigFromEnv(raw)
	if err != nil {
		return nil, err
	}
	if o.S3Endpoint != "" {
		cfg.Endpoint = o.S3Endpoint
	}
	if o.S3Region != "" {
		cfg.Region = o.S3Region
	}
	cfg.Logger, cfg.CreateBucket = o.Logger, create
	st, err := s3.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", raw, err)
	}
	return st, nil
}

// OpenTarget opens a store to publish into: dir:///PATH (created if needed) or
// s3://BUCKET[/PREFIX] (the bucket is created if missing).
func OpenTarget(ctx context.Context, raw string, o Options) (chunkstore.Store, error) {
	if s3.IsURL(raw) {
		return openS3(ctx, raw, o, true)
	}
	p, err := dirPath(raw)
	if err != nil {
		return nil, fmt.Errorf("--to %q: want dir:///absolute/path or s3://BUCKET[/PREFIX]", raw)
	}
	return local.Open(p, local.Options{})
}

// IsS3 reports whether raw is an s3:// URL.
func IsS3(raw string) bool { return s3.IsURL(raw) }
