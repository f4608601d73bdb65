package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// Tests of the mount as nova's `_base`, through the real daemon: the writable area across
// restarts and crashes, adoption of nova's own downloads, unlink of images in use by an
// overlay, and nova's names of Glance images resolved cold.

// TestWritableSurvivesRestartsAndCrashes writes, fsyncs and reads back 64 MiB of random data
// in `_base/ephemeral_x` while the daemon is restarted gracefully 3 times and its serving
// process is killed twice: every byte is right and no operation fails. It runs with the
// serving process on the connection itself (handover) and through the relay (the fallback
// on kernels without FUSE_NOTIFY_RESEND).
func TestWritableSurvivesRestartsAndCrashes(t *testing.T) {
	t.Run("direct", func(t *testing.T) { testWritableSurvives(t) })
	t.Run("relay", func(t *testing.T) { testWritableSurvives(t, "--relay") })
}

func testWritableSurvives(t *testing.T, args ...string) {
	dir := t.TempDir()
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), append([]string{"--fill-rate", "0", "--scrub-rate", "0"}, args...)...)
	const size, block = 64 << 20, 256 << 10
	want := storetest.Data(42, size)
	p := filepath.Join(d.mnt, "ephemeral_x")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var wg sync.WaitGroup
	disturbed := make(chan string, 8)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt() // a failed write ends the test: the disturbances end before it does
	wg.Go(func() {
		events := []string{"restart", "kill", "restart", "kill", "restart"}
		for _, e := range events {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			switch e {
			case "restart":
				if _, stderr, code := basefs(t, "restart", d.mnt); code != 0 {
					t.Errorf("basefs restart: %s", stderr)
				}
			case "kill":
				pid := d.status().PID
				syscall.Kill(pid, syscall.SIGKILL)
			}
			disturbed <- e
		}
	})
	// Write every block in random order, pass after pass (the same bytes), fsyncing often,
	// until all five disturbances have fallen on writes.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for pass := 0; ; pass++ {
		for i, b := range rand.Perm(size / block) {
			off := int64(b) * block
			if _, err := f.WriteAt(want[off:off+block], off); err != nil {
				t.Fatalf("pass %d, write %d at %d: %v", pass, i, off, err)
			}
			if i%16 == 15 {
				if err := f.Sync(); err != nil {
					t.Fatalf("fsync: %v", err)
				}
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		select {
		case <-done:
		default:
			if pass < 200 {
				continue
			}
		}
		break
	}
	halt()
	close(disturbed)
	var seen []string
	for e := range disturbed {
		seen = append(seen, e)
	}
	if len(seen) != 5 {
		t.Fatalf("only %v happened during the writes: write slower", seen)
	}
	// Read back through the open file, through a new open, and after one more restart.
	check := func(how string, r func([]byte, int64) (int, error)) {
		got := make([]byte, size)
		if n, err := r(got, 0); err != nil || n != size {
			t.Fatalf("%s: read %d: %v", how, n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the bytes differ", how)
		}
	}
	check("open file", f.ReadAt)
	if _, stderr, code := basefs(t, "restart", d.mnt); code != 0 {
		t.Fatalf("basefs restart: %s", stderr)
	}
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	check("after another restart", g.ReadAt)
	if fi, _ := os.Stat(p); fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
}

// TestNovaNamesOfGlanceImagesCold: every Glance image is present under nova's name before the
// host has seen it, stat answers its size without fetching data, unknown names are absent,
// and a storm of 100 lookups of unknown names costs one listing.
func TestNovaNamesOfGlanceImagesCold(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	id, data := glanceImage(t, dir, 71, 3<<20, 5<<20)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep,
		"--glance-list-interval", "0", "--glance-list-min-interval", "1h", "--fill-rate", "0")
	name := novaNameOf(id)
	fi, err := os.Stat(filepath.Join(d.mnt, name))
	if err != nil {
		t.Fatalf("nova's name of a Glance image this host never saw: %v", err)
	}
	if fi.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", fi.Size(), len(data))
	}
	if _, err := os.Stat(filepath.Join(d.mnt, name+"_1")); err != nil {
		t.Fatalf("a resized view of it: %v", err)
	}
	st := d.status()
	if f, b, _ := glanceOrigin(st); f != 0 || b != 0 {
		t.Fatalf("stat fetched data: %d fetches, %d bytes", f, b)
	}
	before := st.Glance.Catalog.Listings
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			_, err := os.Stat(filepath.Join(d.mnt, novaNameOf(fmt.Sprintf("no-such-image-%d", i))))
			if !errors.Is(err, os.ErrNotExist) {
				errs <- fmt.Errorf("unknown name %d: %v, want ENOENT", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := d.status().Glance.Catalog.Listings - before; got > 1 {
		t.Fatalf("100 lookups of unknown names cost %d listings, want at most 1", got)
	}
	// The bytes are the image's (fetched lazily now).
	if got := readAll(t, filepath.Join(d.mnt, name)); !bytes.Equal(got, data) {
		t.Fatal("the image's bytes differ")
	}
}

func novaNameOf(id string) string { return glanceref.NovaName(id) }

// TestAdoptionAndUnlinkInUse: nova's own download (`<sha1>.part` renamed to `<sha1>`) on a
// mount without Glance becomes an image served from chunks; an overlay under the instances
// path backing it makes unlink answer EBUSY; without it, unlink removes it and frees its
// unshared chunks.
func TestAdoptionAndUnlinkInUse(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	inst := filepath.Join(dir, "instances")
	os.MkdirAll(inst, 0o755)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(inst, "_base"), "--instances-path", inst,
		"--remove-unused-original-min-age", "0", "--manager-interval", "0", "--fill-rate", "0")
	data := append(storetest.Data(7, 4<<20), make([]byte, 4<<20)...)
	name := novaNameOf("adopted-image")
	part := filepath.Join(d.mnt, name+".part")
	if err := os.WriteFile(part, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(part, filepath.Join(d.mnt, name)); err != nil {
		t.Fatalf("rename of the download to its image name: %v", err)
	}
	base := filepath.Join(d.mnt, name)
	fi, err := os.Stat(base)
	if err != nil || fi.Mode().Perm() != 0o440 || fi.Size() != int64(len(data)) {
		t.Fatalf("adopted image: %v %v", fi, err)
	}
	if _, err := os.Stat(part); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the .part is still there: %v", err)
	}
	if got := readAll(t, base); !bytes.Equal(got, data) {
		t.Fatal("adopted image's bytes differ")
	}
	st := d.status()
	if len(st.Images) != 1 || st.Images[0].Size != int64(len(data)) || st.Manager.Adopted != 1 {
		t.Fatalf("status after adoption: images %+v, manager %+v", st.Images, st.Manager)
	}
	if err := os.WriteFile(base, []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to the adopted image: %v, want EROFS", err)
	}
	// An instance overlay backs it: unlink is refused.
	idir := filepath.Join(inst, "3c1a5f0e-0000-4000-8000-000000000001")
	os.MkdirAll(idir, 0o755)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", filepath.Join(idir, "disk"))
	if err := os.Remove(base); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("unlink of an image an overlay uses: %v, want EBUSY", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Fatalf("refused unlink removed it: %v", err)
	}
	os.RemoveAll(idir)
	if err := os.Remove(base); err != nil {
		t.Fatalf("unlink of an unused image: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after unlink: %v", err)
	}
	st = d.status()
	if len(st.Images) != 0 || st.Manager.ImagesRemoved != 1 || st.Manager.BytesFreed == 0 || st.Manager.RemoveRefused != 1 {
		t.Fatalf("status after unlink: images %+v, manager %+v", st.Images, st.Manager)
	}
	if n := storeFiles(t, d.state); n != 0 {
		t.Fatalf("%d chunk objects left after the only image was removed", n)
	}
	// A wrong digest name refuses the adoption and changes nothing.
	other := filepath.Join(d.mnt, "x.part")
	os.WriteFile(other, data, 0o644)
	bad := filepath.Join(d.mnt, "0000000000000000000000000000000000000000000000000000000000000000")
	if err := os.Rename(other, bad); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("rename to a digest the content does not hash to: %v, want EINVAL", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a refused adoption lost the download: %v", err)
	}
}

// TestDACRelabelOfImageBackingFile starts a libvirt domain whose disk is an overlay on an
// image in the mount, with a domain XML as nova writes it (no relabel='no'): libvirt's DAC
// driver chowns the backing file (EROFS, tolerated) and the domain starts and stops.
func TestDACRelabelOfImageBackingFile(t *testing.T) {
	testenv.NeedBinary(t, "virsh", "qemu-img")
	if err := exec.Command("virsh", "-c", "qemu:///system", "version").Run(); err != nil {
		testenv.Skip(t, "libvirtd is not running (scripts/setup-host.sh starts it)")
	}
	dir := t.TempDir()
	// qemu runs as libvirt-qemu: it must reach the overlay.
	for p := dir; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	origin := filepath.Join(dir, "origin")
	raw, _ := makeImage(t, dir, 2<<20, 5)
	digest := lastLine(mustBasefs(t, "import", "--state", origin, raw))
	inst := filepath.Join(dir, "instances")
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(inst, "_base"), "--origin", "dir://"+origin, "--instances-path", inst)
	disk := filepath.Join(inst, "dac-test", "disk")
	os.MkdirAll(filepath.Dir(disk), 0o755)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(d.mnt, digest), "-F", "raw", disk)
	os.Chmod(filepath.Dir(disk), 0o755)
	name := "basefs-dac-test-" + strconv.Itoa(os.Getpid())
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><on_poweroff>destroy</on_poweroff>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>
<source file='%s'/><target dev='vda' bus='virtio'/></disk><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>`, name, disk)
	defineDomain(t, dir, name, xml)
	if out, err := virsh("start", name); err != nil {
		t.Fatalf("domain start with the DAC driver relabelling a backing file on the mount: %v\n%s", err, out)
	}
	if out, err := virsh("destroy", name); err != nil {
		t.Fatalf("virsh destroy: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(d.mnt, digest)); err != nil || fi.Mode().Perm() != 0o440 {
		t.Fatalf("image after the domain: %v %v", fi, err)
	}
}

// defineDomain defines libvirt domain name from xml (undefined when t ends).
func defineDomain(t *testing.T, dir, name, xml string) {
	t.Helper()
	xf := filepath.Join(dir, name+".xml")
	os.WriteFile(xf, []byte(xml), 0o644)
	if out, err := virsh("define", xf); err != nil {
		t.Fatalf("virsh define: %v\n%s", err, out)
	}
	t.Cleanup(func() { virsh("destroy", name); virsh("undefine", name) })
}

func virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	return string(out), err
}
