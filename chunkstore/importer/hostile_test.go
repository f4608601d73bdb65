package importer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/inspect/inspecttest"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestHostileImagesRefused imports every image of the corpus as `basefs import` (declared
// format) and as an adopted download (verbatim): the hostile ones are refused and leave
// nothing in the store; the clean ones import to the same image as their raw conversion.
func TestHostileImagesRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cases := inspecttest.Corpus(t, dir)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStore(t)
			res, err := Import(ctx, s, c.Path, Options{Format: c.DiskFormat, Limits: DefaultLimits})
			if !c.Safe {
				if !errors.Is(err, inspect.ErrRefused) {
					t.Fatalf("import: %v (result %+v); want a refusal", err, res)
				}
				if n, files := storeBytes(t, s); files != 0 {
					t.Fatalf("the refused import left %d files (%d bytes)", files, n)
				}
				if c.Hostile {
					// As nova's download renamed into _base: refused whatever format it is.
					if _, err := Import(ctx, s, c.Path, Options{Verbatim: true}); !errors.Is(err, inspect.ErrRefused) && c.Name != "vmdk-descriptor-file" {
						t.Fatalf("verbatim import: %v; want a refusal", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("import of a clean image: %v", err)
			}
			// The same bytes as qemu-img's own conversion (run here without basefs's limits).
			raw := filepath.Join(t.TempDir(), "ref.raw")
			v, err := inspect.CheckFile(c.Path, c.DiskFormat)
			if err != nil {
				t.Fatal(err)
			}
			run(t, "qemu-img", "convert", "-f", v.QemuFormat, "-O", "raw", c.Path, raw)
			ref, err := Import(ctx, newStore(t), raw, Options{Format: "raw"})
			if err != nil && !errors.Is(err, inspect.ErrRefused) {
				t.Fatal(err)
			}
			if err == nil && ref.Digest != res.Digest {
				t.Fatalf("imported as %s, qemu-img's raw conversion is %s", res.Digest, ref.Digest)
			}
		})
	}
}

// TestQcow2BombOnSmallFilesystem converts a small qcow2 that expands to 192 MiB of non-zero
// data into a state on a 64 MiB tmpfs with a 16 MiB reserve: refused, the filesystem never
// filled, nothing kept.
func TestQcow2BombOnSmallFilesystem(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "qemu-img", "mount", "umount")
	dir := t.TempDir()
	src := filepath.Join(dir, "a.raw")
	if err := os.WriteFile(src, bytes.Repeat([]byte{'A'}, 192<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	bomb := filepath.Join(dir, "bomb.qcow2")
	run(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", src, bomb)
	os.Remove(src)
	if fi, _ := os.Stat(bomb); fi.Size() > 4<<20 {
		t.Fatalf("the bomb is %d bytes: not small", fi.Size())
	}
	mnt := filepath.Join(dir, "state")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	s, err := local.Open(mnt, local.Options{MinFree: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	free0, _ := local.FreeBytes(mnt)
	// Too large for --max-image-size: refused before qemu-img converts anything.
	if _, err := Import(context.Background(), s, bomb, Options{Format: "qcow2", Limits: Limits{MaxSize: 64 << 20}}); !errors.Is(err, inspect.ErrRefused) {
		t.Fatalf("bomb over --max-image-size: %v; want a refusal", err)
	}
	// Within it, but more than the filesystem holds: stopped at the reserve.
	start := time.Now()
	lowest := free0
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if f, err := local.FreeBytes(mnt); err == nil && f < lowest {
				lowest = f
			}
			time.Sleep(time.Millisecond) // sampling the filesystem, not waiting on a condition
		}
	})
	_, err = Import(context.Background(), s, bomb, Options{Format: "qcow2", Limits: Limits{MinFree: 16 << 20, MaxSize: 1 << 30, ConvertTimeout: time.Minute}})
	close(stop)
	watcher.Wait()
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("bomb on a 64 MiB filesystem: %v; want ErrNoSpace", err)
	}
	t.Logf("refused after %s: %v; lowest free %d MiB", time.Since(start).Round(time.Millisecond), err, lowest>>20)
	if lowest < 4<<20 {
		t.Fatalf("the filesystem fell to %d bytes free: the reserve did not hold", lowest)
	}
	if f, _ := local.FreeBytes(mnt); f < free0-(1<<20) {
		t.Fatalf("%d bytes free after the refusal, %d before: something was kept", f, free0)
	}
}
