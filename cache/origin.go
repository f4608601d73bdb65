package cache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/s3"
)

// OpenOrigin opens an origin from its URL: dir:///path (a state or published directory),
// http(s)://host/path (the same layout behind a web server) or s3://bucket/prefix (the shared
// tier; endpoint and credentials from the AWS_* environment).
func OpenOrigin(raw string) (chunkstore.Getter, error) {
	return OpenOriginWith(context.Background(), raw, OriginOptions{})
}

// OpenOriginWith is OpenOrigin with options (S3 endpoint and region flags, a logger).
func OpenOriginWith(ctx context.Context, raw string, o OriginOptions) (chunkstore.Getter, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("origin %q: %w", raw, err)
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
		return nil, fmt.Errorf("origin %q: unknown scheme %q (want dir://, http://, https:// or s3://)", raw, u.Scheme)
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

// IsS3 reports whether raw is an s3:// URL.
func IsS3(raw string) bool { return s3.IsURL(raw) }
