package agent

import (
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "Z", "0", "web-1", "vm_2.3", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", "a..b", "a-"} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", "/a", "_base", "-a", ".hidden", "a b", "a\x00", "é", "a:b",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		if err := ValidateID(bad); err == nil {
			t.Errorf("ValidateID(%q) accepted it", bad)
		}
	}
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"web-1", "..", "a/b", "_base", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID(id) != nil {
			return
		}
		if strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || id[0] == '.' || id[0] == '_' || id[0] == '-' || len(id) > MaxIDLen {
			t.Fatalf("ValidateID accepted %q", id)
		}
		if got, ok := idFromDomain(DomainName(id)); !ok || got != id {
			t.Fatalf("idFromDomain(DomainName(%q)) = %q, %v", id, got, ok)
		}
	})
}

var testDigest = chunkstore.Sum([]byte("image"))

func TestPickView(t *testing.T) {
	const img = 5 * MiB
	for _, tc := range []struct {
		disk int64
		want string // "" = error
	}{
		{img, testDigest.String()},
		{img + 512, testDigest.String() + "_1"},
		{512 * MiB, testDigest.String() + "_1"},
		{GiB, testDigest.String() + "_1"},
		{GiB + 512, testDigest.String() + "_2"},
		{20 * GiB, testDigest.String() + "_20"},
		{img - 512, ""},
		{0, ""},
	} {
		v, err := PickView(testDigest, img, tc.disk)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "smaller than the image") {
				t.Errorf("PickView(disk %d) = %v, %v; want an error", tc.disk, v, err)
			}
			continue
		}
		if err != nil || v.String() != tc.want {
			t.Errorf("PickView(disk %d) = %v, %v; want %s", tc.disk, v, err, tc.want)
		}
		if v.Size(img) < tc.disk {
			t.Errorf("PickView(disk %d): view of %d bytes does not hold the disk", tc.disk, v.Size(img))
		}
		if p, err := ParseView(v.String()); err != nil || p != v {
			t.Errorf("ParseView(%q) = %v, %v", v.String(), p, err)
		}
	}
	// An image larger than a GiB with a disk of the same size: the image itself.
	if v, err := PickView(testDigest, 3*GiB/2, 3*GiB/2); err != nil || v.GiB != 0 {
		t.Errorf("PickView(equal sizes) = %v, %v", v, err)
	}
}

func TestParseView(t *testing.T) {
	d := testDigest.String()
	for _, bad := range []string{"", d[:63], d + "_", d + "_0", d + "_01", d + "_-1", d + "_1_2", d + "_x", d + "_123456789", strings.ToUpper(d), d + ".raw"} {
		if v, err := ParseView(bad); err == nil {
			t.Errorf("ParseView(%q) = %v", bad, v)
		}
	}
}

func FuzzParseView(f *testing.F) {
	d := testDigest.String()
	for _, s := range []string{d, d + "_1", d + "_20", d + "_0", "abc_1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, err := ParseView(name)
		if err != nil {
			return
		}
		if v.String() != name {
			t.Fatalf("ParseView(%q).String() = %q", name, v.String())
		}
	})
}

func TestParseImageRef(t *testing.T) {
	if r, err := ParseImageRef(testDigest.String()); err != nil || r.Digest != testDigest || r.GlanceID != "" {
		t.Fatalf("ParseImageRef: %v, %v", r, err)
	}
	const id = "0b6f3a9e-6a7c-4f1e-9d2b-3c4d5e6f7a8b"
	if r, err := ParseImageRef("glance://" + id); err != nil || r.GlanceID != id || !r.Digest.IsZero() || r.String() != "glance://"+id {
		t.Fatalf("ParseImageRef(glance://%s): %v, %v", id, r, err)
	}
	for _, bad := range []string{"", "glance://1234", "glance://" + strings.ToUpper(id), "glance://" + id + "/x", "glance:///" + id, "cirros", testDigest.String()[:12]} {
		if _, err := ParseImageRef(bad); err == nil {
			t.Errorf("ParseImageRef(%q) accepted it", bad)
		}
	}
}
