package glanceimg

import (
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore"
)

func TestGlanceIndexEncoding(t *testing.T) {
	e := &GlanceIndexEntry{Manifest: chunkstore.Digest{1, 2, 3}, HashAlgo: "sha512", HashValue: "ab12"}
	b := e.Encode()
	if !strings.HasPrefix(string(b), "basefs-glance-index 1\nmanifest 010203") || !strings.HasSuffix(string(b), "\nos_hash_algo sha512\nos_hash_value ab12\n") {
		t.Fatalf("encoding %q", b)
	}
	got, err := ParseGlanceIndex(b)
	if err != nil || *got != *e {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	for name, in := range map[string]string{
		"magic":       strings.Replace(string(b), "index 1", "index 2", 1),
		"short":       "basefs-glance-index 1\nmanifest " + e.Manifest.String() + "\n",
		"bad digest":  strings.Replace(string(b), "manifest 01", "manifest zz", 1),
		"empty value": strings.Replace(string(b), "os_hash_value ab12", "os_hash_value ", 1),
		"extra":       string(b) + "more\n",
		"key order":   strings.Replace(string(b), "os_hash_algo", "os_hash_alg", 1),
	} {
		if _, err := ParseGlanceIndex([]byte(in)); err == nil {
			t.Errorf("%s: parsed %q", name, in)
		}
	}
}
