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
		return local.Open(u.Path, local.Options{ReadOnly: true})
	case "http", "https":
		return httpstore.New(raw, httpstore.Options{})
	default:
		return nil, fmt.Errorf("origin %q: unknown scheme %q (want dir://, http:// or https://)", raw, u.Scheme)
	}
}
