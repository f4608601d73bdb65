package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestWritableAreaFollowsNoLink: a symbolic link planted in the writable area's directory
// (the mount cannot make one) is never followed out of it: opening, writing, truncating or
// adopting it through the mount reach nothing outside.
func TestWritableAreaFollowsNoLink(t *testing.T) {
	e := newEnv(t, envOptions{writable: true})
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(FilesDir(e.state.Root()), "ephemeral_planted")); err != nil {
		t.Fatal(err)
	}
	p := e.path("ephemeral_planted")
	if b, err := os.ReadFile(p); err == nil {
		t.Errorf("read through a planted link: %q", b)
	}
	if err := os.WriteFile(p, []byte("overwritten"), 0o644); err == nil {
		t.Errorf("write through a planted link succeeded")
	}
	if err := os.Truncate(p, 0); err == nil {
		t.Errorf("truncate through a planted link succeeded")
	}
	if err := os.Rename(p, e.path(strings.Repeat("ab", 20))); err == nil {
		t.Errorf("adoption of a planted link succeeded")
	}
	// A file the kernel knows, swapped for a link behind its back (between lookup and open).
	q := e.path("swap_1")
	if err := os.WriteFile(q, []byte("nova's swap"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q); err != nil { // the kernel holds the name's node now
		t.Fatal(err)
	}
	backing := filepath.Join(FilesDir(e.state.Root()), "swap_1")
	os.Remove(backing)
	if err := os.Symlink(outside, backing); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(q); err == nil {
		t.Errorf("read of a name swapped for a link: %q", b)
	}
	if f, err := os.OpenFile(q, os.O_WRONLY, 0); err == nil {
		f.WriteString("overwritten")
		f.Close()
	}
	if b, _ := os.ReadFile(outside); string(b) != "host secret" {
		t.Errorf("the file outside is now %q", b)
	}
	for _, bad := range []string{".", ".."} {
		if st := (&rootDir{area: &area{files: &files{}}}).creatable(bad); st != fuse.EINVAL {
			t.Errorf("create %q: %v, want EINVAL", bad, st)
		}
	}
}
