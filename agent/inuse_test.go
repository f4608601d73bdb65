package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestInUseImages scans overlays made by qemu-img on plain files named like views: views of
// the same image count together, other backing files and non-instances do not, an unreadable
// disk is an error.
func TestInUseImages(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "_base")
	inst := filepath.Join(dir, "instances")
	os.MkdirAll(base, 0o755)
	a, b := chunkstore.Sum([]byte("a")), chunkstore.Sum([]byte("b"))
	overlay := func(id, backing string) {
		t.Helper()
		p := filepath.Join(base, backing)
		if _, err := os.Stat(p); err != nil {
			os.WriteFile(p, make([]byte, 1<<20), 0o444)
		}
		os.MkdirAll(filepath.Join(inst, id), 0o755)
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", p, "-F", "raw", filepath.Join(inst, id, DiskFile), "2M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v: %s", err, out)
		}
	}
	if used, err := InUseImages(inst); err != nil || len(used) != 0 {
		t.Fatalf("no instances path: %v, %v", used, err)
	}
	overlay("vm-2", a.String()+"_1")
	overlay("vm-1", a.String())
	overlay("vm-3", b.String()+"_20")
	overlay("nova-style", "0123456789abcdef0123456789abcdef01234567") // a sha1 name: not a basefs view
	os.MkdirAll(filepath.Join(inst, "spawning"), 0o755)               // no disk yet
	os.MkdirAll(filepath.Join(inst, "_base"), 0o755)                  // not an instance
	os.WriteFile(filepath.Join(inst, "_base", DiskFile), []byte("not looked at"), 0o644)
	os.WriteFile(filepath.Join(inst, "stray-file"), nil, 0o644)
	used, err := InUseImages(inst)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) != 2 || !slices.Equal(used[a], []string{"vm-1", "vm-2"}) || !slices.Equal(used[b], []string{"vm-3"}) {
		t.Fatalf("InUseImages: %v", used)
	}
	os.MkdirAll(filepath.Join(inst, "broken"), 0o755)
	os.WriteFile(filepath.Join(inst, "broken", DiskFile), []byte("QFI\xfb garbage"), 0o644)
	if used, err := InUseImages(inst); err == nil {
		t.Fatalf("InUseImages with an unreadable disk: %v, no error", used)
	}
}
