package httpstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: String(), or "error: <part of the message>"
	}{
		{"http://mirror.example", "http://mirror.example"},
		{"http://mirror.example/", "http://mirror.example"},
		{"https://mirror.example:8443/basefs/v1/", "https://mirror.example:8443/basefs/v1"},
		{"HTTPS://mirror.example/x", "https://mirror.example/x"},
		{"http://[::1]:8080/pub", "http://[::1]:8080/pub"},
		{"http://h/a%20b//", "http://h/a%20b"},
		{"", "error: no scheme"},
		{"mirror.example/basefs", "error: no scheme"},
		{"ftp://mirror.example/x", `error: scheme "ftp" is not supported`},
		{"dir:///srv/basefs", `error: scheme "dir" is not supported`},
		{"http:mirror.example", "error: want http://host/path"},
		{"http://", "error: no host"},
		{"http:///srv/basefs", "error: no host"},
		{"http://:8080/x", "error: no host"},
		{"http://user:secret@mirror.example/x", "error: credentials"},
		{"http://mirror.example/x?token=1", "error: query"},
		{"http://mirror.example/x?", "error: query"},
		{"http://mirror.example/x#frag", "error: fragment"},
		{"http://mirror.example/x#", "error: fragment"},
		{"http://mirror.example:port/x", "error: base URL"},
		{"http://mirror .example/x", "error: base URL"},
	} {
		s, err := httpstore.New(tc.in, httpstore.Options{})
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
			shown := httpx.Redact(tc.in) // a URL with credentials is named without them
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), shown) || strings.Contains(err.Error(), "secret") {
				t.Errorf("New(%q) = %v; want an error naming the URL and saying %q", tc.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tc.in, err)
			continue
		}
		if s.String() != tc.want {
			t.Errorf("New(%q).String() = %q; want %q", tc.in, s.String(), tc.want)
		}
	}
}

func TestNewOptions(t *testing.T) {
	for _, o := range []httpstore.Options{
		{Timeout: -time.Second},
		{StallTimeout: -1},
		{BaseBackoff: -1},
		{MaxBackoff: -1},
		{MaxAttempts: -1},
		{MaxManifestSize: -1},
	} {
		if _, err := httpstore.New("http://h/x", o); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("New with %+v = %v; want an error saying what is negative", o, err)
		}
	}
}

func TestURLs(t *testing.T) {
	s, err := httpstore.New("http://h:81/pub/", httpstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := chunkstore.MustParseDigest("3f1c000000000000000000000000000000000000000000000000000000000abc")
	if got, want := s.ChunkURL(d), "http://h:81/pub/chunks/3f/"+d.String(); got != want {
		t.Errorf("ChunkURL = %q; want %q", got, want)
	}
	if got, want := s.ManifestURL(d), "http://h:81/pub/manifests/"+d.String(); got != want {
		t.Errorf("ManifestURL = %q; want %q", got, want)
	}
}

// FuzzNew: New never panics, and a base it accepts is http(s), has no query, fragment or
// trailing slash, and is accepted again unchanged.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"http://h", "https://h:1/a/b/", "http://[::1]/x%2Fy", "http://h/x?y#z", "HTTP://H/%41/", "http://h/a%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := httpstore.New(in, httpstore.Options{})
		if err != nil {
			return
		}
		b := s.String()
		if !strings.HasPrefix(b, "http://") && !strings.HasPrefix(b, "https://") || strings.ContainsAny(b, "?#") || strings.HasSuffix(b, "/") {
			t.Fatalf("New(%q).String() = %q", in, b)
		}
		s2, err := httpstore.New(b, httpstore.Options{})
		if err != nil || s2.String() != b {
			t.Fatalf("New(%q) accepted; New(%q) = %v, %v", in, b, s2, err)
		}
	})
}
