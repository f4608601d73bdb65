package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestReadTrace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "trace")
	trace := "blk_co_preadv blk 0x1 bs 0x2 offset 0 bytes 512 flags 0x0\n" +
		"12345@1.5:blk_co_preadv blk 0x1 bs 0x2 offset 4096 bytes 8192 flags 0x8\n" +
		"blk_co_pwritev blk 0x1 bs 0x2 offset 0 bytes 4096 flags 0x0\n" +
		"blk_co_preadv blk 0x1 bs 0x2 offset 8192 bytes 0 flags 0x0\n" +
		"garbage\n"
	if err := os.WriteFile(p, []byte(trace), 0o644); err != nil {
		t.Fatal(err)
	}
	xs, err := readTrace(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []extent{{0, 512}, {4096, 8192}}
	if len(xs) != len(want) || xs[0] != want[0] || xs[1] != want[1] {
		t.Errorf("readTrace = %v, want %v", xs, want)
	}
}

func TestUniqueBytes(t *testing.T) {
	xs := []extent{{100, 50}, {0, 10}, {120, 100}, {5, 10}, {300, 1}}
	// [0,15) ∪ [100,220) ∪ [300,301)
	if got := uniqueBytes(xs); got != 15+120+1 {
		t.Errorf("uniqueBytes = %d, want %d", got, 15+120+1)
	}
}

func TestGranuleCosts(t *testing.T) {
	// 4 blocks of 64 KiB: data, zeros, a repeat of block 0, other data.
	g := 64 * KiB
	img := make([]byte, 4*g)
	for i := range g {
		img[i] = byte(i * 7)
		img[3*g+i] = byte(i*13 + 1)
	}
	copy(img[2*g:3*g], img[:g])
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	xs := []extent{{10, 100}, {g + 5, 2 * g}, {3*g + 1, 1}} // touches blocks 0, 1, 2, 3 at 64 KiB
	gu, err := granuleCosts(p, int64(len(img)), xs, []int64{g, 4 * g})
	if err != nil {
		t.Fatal(err)
	}
	if gu[0].Blocks != 2 || gu[0].Bytes != 2*g || gu[0].Stored <= 0 {
		t.Errorf("64 KiB: %+v, want 2 blocks (zero block and repeat not counted), %d bytes", gu[0], 2*g)
	}
	if gu[1].Blocks != 1 || gu[1].Bytes != 4*g {
		t.Errorf("256 KiB: %+v, want 1 block of %d bytes", gu[1], 4*g)
	}
}

// testLog makes the bench's progress lines test log lines.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRealOSBootsFromColdLazyBase: the real OS image (scripts/build-os-image.sh, built if
// missing) is imported at the default chunk size and published; `basefs-agent spawn` boots it
// (libvirt, TCG) on a basefs mount with an empty state whose origin is that layout over HTTP,
// to the login prompt on its serial console. The chunks fetched are what the guest read, not
// its neighbourhood (at most 1.5× the guest's bytes), and every one was verified: no read
// failed, nothing was corrupt.
func TestRealOSBootsFromColdLazyBase(t *testing.T) {
	agenttest.Need(t)
	start := time.Now()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/basefs", "./cmd/basefs-agent")
	build.Dir = agenttest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work, err := os.MkdirTemp("", "basefs-realos-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	o := Options{Progress: testLog{t}, VirtType: agenttest.VirtType()}
	o.Defaults()
	e := &env{opts: o, work: work, basefs: filepath.Join(bin, "basefs"), agent: filepath.Join(bin, "basefs-agent"), start: start, cur: t.Name()}
	os.Chmod(work, 0o755) // qemu runs as another user
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	img, err := e.osImage(ctx)
	if err != nil {
		testenv.Skip(t, fmt.Sprintf("the OS image (scripts/build-os-image.sh): %v", err))
	}
	built := time.Since(start)
	dirs, err := e.bootDirs("real-os")
	if err != nil {
		t.Fatal(err)
	}
	imp, err := e.importPublished(ctx, dirs.originState, dirs.pub, img.raw)
	if err != nil {
		t.Fatal(err)
	}
	org, err := startOrigin(dirs.www, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer org.Close()
	d, err := e.startDaemon(ctx, filepath.Join(work, "state"), dirs.mount, []string{org.URL + "/pub/"}, "--instances-path", dirs.instances)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	fi, err := os.Stat(img.raw)
	if err != nil {
		t.Fatal(err)
	}
	b := realBoot{agent: e.agent, instances: dirs.instances, base: dirs.mount, novaInstances: dirs.novaInst,
		kernel: img.kernel, initrd: img.initrd, virtType: o.VirtType, diskSize: fi.Size()}
	lb, err := b.agentBoot(ctx, d, org.Shaper, fmt.Sprintf("t%d-realos", os.Getpid()), imp.Digest)
	if err != nil {
		t.Fatalf("boot: %v\ndaemon log: %s", err, tail(d.Log(), 2000))
	}
	st, err := d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spawn → login: %.1f s (running after %.1f s); the guest read %s in %d reads; basefs fetched %s of chunks (%s on the wire, %d requests); image %s chunks; test %.0f s (%.0f s to find or build the image)",
		lb.Login, lb.Running, mibText(lb.GuestBytes), lb.GuestReads, mibText(lb.ChunkBytes), mibText(lb.OriginBytes), lb.OriginRequests,
		sizeText(imp.ChunkSize), time.Since(start).Seconds(), built.Seconds())
	if lb.GuestBytes < 8*MiB {
		t.Errorf("the guest read only %d bytes of its disk before login:", lb.GuestBytes)
	}
	if float64(lb.ChunkBytes) > 1.5*float64(lb.GuestBytes) {
		t.Errorf("basefs fetched %d bytes of chunks for %d bytes the guest read: more than 1.5×", lb.ChunkBytes, lb.GuestBytes)
	}
	if s := st.Stats; s.ReadErrors != 0 || s.LocalCorrupt != 0 || s.OriginCorrupt() != 0 {
		t.Errorf("read errors %d, local corrupt %d, origin corrupt %d; want none", s.ReadErrors, s.LocalCorrupt, s.OriginCorrupt())
	}
}
