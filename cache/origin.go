package cache

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// OpenOrigin opens an origin from its URL: dir:///path (a state or published directory) or
// http(s)://host/path (the same layout behind a web server).
func OpenOrigin(raw string) (chunkstore.Getter, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("origin %q: %w", raw, err)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" || u.Path == "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("origin %q: want dir:///absolute/path", raw)
		}
		s, err := local.Open(u.Path, local.Options{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("origin %q: %w", raw, err)
		}
		return s, nil
	case "http", "https":
		s, err := httpstore.New(raw, httpstore.Options{})
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("origin %q: unknown scheme %q (want dir://, http:// or https://)", raw, u.Scheme)
	}
}
