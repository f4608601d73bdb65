package fs

import (
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	d := strings.Repeat("ab", 32)
	good := map[string]Name{
		d:              {Ref: d},
		d + "_1":       {Ref: d, ViewGiB: 1},
		d + "_20":      {Ref: d, ViewGiB: 20},
		d + "_1048576": {Ref: d, ViewGiB: 1048576},
		"da39a3ee5e6b4b0d3255bfef95601890afd80709": {Ref: "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
	}
	for in, want := range good {
		got, ok := ParseName(in)
		if !ok || got != want {
			t.Errorf("ParseName(%q) = %+v, %v; want %+v", in, got, ok, want)
		}
		if got.String() != in {
			t.Errorf("%q formats back as %q", in, got.String())
		}
	}
	for _, in := range []string{
		"", ".", "..", "_1", d + "_", d + "_0", d + "_01", d + "_-1", d + "_+1", d + "_ 1",
		d + "_1048577", d + "_99999999999999999999", d + "_1_2", d + "_1x", strings.ToUpper(d),
		d[:63] + "g", d + " ", "lost+found", d + "/x", strings.Repeat("a", 129),
	} {
		if got, ok := ParseName(in); ok {
			t.Errorf("ParseName(%q) = %+v; want rejected", in, got)
		}
	}
}

func FuzzParseName(f *testing.F) {
	d := strings.Repeat("ab", 32)
	for _, s := range []string{d, d + "_1", d + "_0", "..", d + "_99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := ParseName(s)
		if !ok {
			return
		}
		if n.String() != s {
			t.Fatalf("accepted %q but it formats as %q: two names for one view", s, n.String())
		}
		if n.ViewGiB < 0 || n.ViewGiB > maxViewGiB {
			t.Fatalf("accepted size %d", n.ViewGiB)
		}
	})
}
