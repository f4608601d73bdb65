package cache

import (
	"bytes"
	"testing"
)

func TestProfileEncoding(t *testing.T) {
	b := EncodeProfile([]int{9, 2, 14})
	if string(b) != "basefs-profile 1\nchunks 3\n9\n2\n14\n" {
		t.Fatalf("encoding %q", b)
	}
	got, err := ParseProfile(b, 16)
	if err != nil || len(got) != 3 || got[0] != 9 || got[2] != 14 {
		t.Fatalf("parse: %v, %v", got, err)
	}
	for name, in := range map[string]string{
		"out of range": "basefs-profile 1\nchunks 1\n16\n",
		"repeat":       "basefs-profile 1\nchunks 2\n1\n1\n",
		"leading zero": "basefs-profile 1\nchunks 1\n01\n",
		"count":        "basefs-profile 1\nchunks 2\n1\n",
		"trailing":     "basefs-profile 1\nchunks 1\n1\n\n",
		"version":      "basefs-profile 2\nchunks 0\n",
		"too many":     "basefs-profile 1\nchunks 17\n",
	} {
		if _, err := ParseProfile([]byte(in), 16); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add(EncodeProfile([]int{3, 1, 2}), 8)
	f.Add([]byte("basefs-profile 1\nchunks 0\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1<<20 {
			return
		}
		idx, err := ParseProfile(b, n)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeProfile(idx), b) {
			t.Fatalf("accepted a non-canonical profile %q", b)
		}
	})
}
