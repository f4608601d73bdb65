package glanceref

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	const id = "0b6f3a9e-6a7c-4f1e-9d2b-3c4d5e6f7a8b"
	if got, err := ParseRef("glance://" + id); err != nil || got != id {
		t.Fatalf("ParseRef: %q, %v", got, err)
	}
	for _, bad := range []string{"", id, "glance://", "glance://" + strings.ToUpper(id), "glance://" + id + "/", "glance:///" + id,
		"glance://" + id + "?x", "glance://0b6f3a9e_6a7c-4f1e-9d2b-3c4d5e6f7a8b", "glance://0b6f3a9e-6a7c-4f1e-9d2b-3c4d5e6f7a8", "http://" + id} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted it", bad)
		}
	}
	// nova: hashlib.sha1(image_id.encode()).hexdigest()
	if got := NovaName("abc"); got != "a9993e364706816aba3e25717850c26c9cd0d89d" {
		t.Fatalf("NovaName(abc) = %s", got)
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add("glance://0b6f3a9e-6a7c-4f1e-9d2b-3c4d5e6f7a8b")
	f.Add("glance://../../etc/passwd")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRef(s)
		if err != nil {
			return
		}
		if "glance://"+id != s || len(id) != 36 || strings.ContainsAny(id, "/?#.%") || ValidateID(id) != nil {
			t.Fatalf("ParseRef(%q) = %q", s, id)
		}
	})
}
