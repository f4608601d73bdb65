package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// twoImages imports image A (n MiB of data) and image B (A with its first two MiB changed)
// into origin and returns their digests and bytes.
func twoImages(t *testing.T, dir, origin string, n int) (string, string, []byte, []byte) {
	a := storetest.Data(7, n<<20)
	b := append(storetest.Data(8, 2<<20), a[2<<20:]...)
	pa, pb := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	os.WriteFile(pa, a, 0o644)
	os.WriteFile(pb, b, 0o644)
	da := importMiB(t, origin, pa)
	db := importMiB(t, origin, pb)
	return da, db, a, b
}

func gc(t *testing.T, d *daemon, dry bool) *cache.GCReport {
	t.Helper()
	args := []string{"gc", "--base", d.mnt, "--json"}
	if dry {
		args = append(args, "--dry-run")
	}
	var rep cache.GCReport
	if err := json.Unmarshal([]byte(mustBasefs(t, args...)), &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

func storeFiles(t *testing.T, state string) int {
	n := 0
	filepath.Walk(filepath.Join(state, "chunks"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCleanupInUseMinAgeShared(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	da, db, a, b := twoImages(t, dir, origin, 6)
	inst := filepath.Join(dir, "instances")
	os.MkdirAll(filepath.Join(inst, "vm1"), 0o755)
	state := filepath.Join(dir, "state")
	d := startDaemon(t, state, filepath.Join(dir, "mnt"), "--origin", "dir://"+origin,
		"--instances-path", inst, "--remove-unused-original-min-age", "3600", "--manager-interval", "1h",
		"--fill-rate", "0", "--scrub-rate", "0")
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, da)), a) || !bytes.Equal(readAll(t, filepath.Join(d.mnt, db)), b) {
		t.Fatal("wrong bytes")
	}
	// Instance vm1's overlay is backed by a view of A: A is in use.
	run(t, "qemu-img", "create", "-f", "qcow2", "-b", filepath.Join(d.mnt, da+"_1"), "-F", "raw", filepath.Join(inst, "vm1", "disk"))
	waitPresent(t, d, 8) // 6 chunks of A, 2 of B's own
	if young := gc(t, d, true); !actions(young, map[string]string{da: "keep", db: "keep"}) {
		t.Fatalf("dry run before the minimum age: %+v; want both kept", young.Images)
	}
	// Older than the minimum age, as nova's image cache manager ages a base (utime through
	// the mount), not by waiting for it; package cache moves its clock for ages by reads.
	age(t, d, da, db)

	dry := gc(t, d, true)
	if want := map[string]string{da: "keep", db: "remove"}; !actions(dry, want) {
		t.Fatalf("dry run: %+v; want A kept (in use), B removed", dry.Images)
	}
	if dry.ChunksRemoved != 2 || storeFiles(t, state) != 8 {
		t.Fatalf("dry run: would remove %d chunks (want B's own 2); store holds %d files (want 8, untouched)", dry.ChunksRemoved, storeFiles(t, state))
	}
	rep := gc(t, d, false)
	if !actions(rep, map[string]string{da: "keep", db: "remove"}) || rep.ChunksRemoved != 2 {
		t.Fatalf("cleanup: %+v", rep)
	}
	if storeFiles(t, state) != 6 {
		t.Fatalf("after removing B: %d chunks stored; want A's 6 (its 4 shared with B stay)", storeFiles(t, state))
	}
	if _, err := os.Stat(filepath.Join(state, "manifests", db)); !os.IsNotExist(err) {
		t.Fatal("B's manifest is still there")
	}
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, da)), a) {
		t.Fatal("A reads wrong after B's removal")
	}
	// Terminate: the overlay goes; after the minimum age A goes too.
	os.RemoveAll(filepath.Join(inst, "vm1"))
	age(t, d, da)
	rep = gc(t, d, false)
	if !actions(rep, map[string]string{da: "remove"}) || storeFiles(t, state) != 0 {
		t.Fatalf("after terminate and the minimum age: %+v, %d chunks left", rep.Images, storeFiles(t, state))
	}
	// An image removed locally comes back from the origin when used again.
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, db)), b) {
		t.Fatal("B after cleanup: wrong bytes")
	}
}

// age sets the images' last use to two hours ago through the mount (utime, as nova does).
func age(t *testing.T, d *daemon, images ...string) {
	t.Helper()
	old := time.Now().Add(-2 * time.Hour)
	for _, im := range images {
		if err := os.Chtimes(filepath.Join(d.mnt, im), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func actions(rep *cache.GCReport, want map[string]string) bool {
	if len(rep.Images) != len(want) {
		return false
	}
	for _, im := range rep.Images {
		if want[im.Digest.String()] != im.Action {
			return false
		}
	}
	return true
}

func waitPresent(t *testing.T, d *daemon, chunks int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n := storeFiles(t, d.state); n >= chunks {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d chunks stored; want %d", n, chunks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCapacityBound(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	data := storetest.Data(9, 16<<20)
	p := filepath.Join(dir, "img.raw")
	os.WriteFile(p, data, 0o644)
	dg := importMiB(t, origin, p)
	state := filepath.Join(dir, "state")
	d := startDaemon(t, state, filepath.Join(dir, "mnt"), "--origin", "dir://"+origin,
		"--instances-path", filepath.Join(dir, "instances"), "--cache-size", "4200000", "--manager-interval", "1h", "--fill-rate", "0")
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, dg)), data) {
		t.Fatal("wrong bytes")
	}
	waitPresent(t, d, 16)
	rep := gc(t, d, false)
	if rep.StoredBytes > 4200000 || rep.Evicted != 12 {
		t.Fatalf("capacity 4.2 MB: %d bytes stored after eviction of %d chunks; want ≤ 4.2 MB after 12", rep.StoredBytes, rep.Evicted)
	}
	// Evicted chunks come back, correct (O_DIRECT: past the page cache and the memory cache).
	f, err := os.OpenFile(filepath.Join(d.mnt, dg), os.O_RDONLY|0x4000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(1 << 20)
	for i := range 16 {
		if _, err := f.ReadAt(buf, int64(i)<<20); err != nil || !bytes.Equal(buf, data[i<<20:(i+1)<<20]) {
			t.Fatalf("chunk %d after eviction: %v or wrong bytes", i, err)
		}
	}
}

func TestScrubRepairsEveryCorruption(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	data := storetest.Data(10, 12<<20)
	p := filepath.Join(dir, "img.raw")
	os.WriteFile(p, data, 0o644)
	dg := importMiB(t, origin, p)
	state := filepath.Join(dir, "state")
	d := startDaemon(t, state, filepath.Join(dir, "mnt"), "--origin", "dir://"+origin, "--manager-interval", "1h", "--scrub-rate", "0")
	readAll(t, filepath.Join(d.mnt, dg))
	waitPresent(t, d, 12)
	// Corrupt 5 of the idle image's chunks in different ways.
	files, _ := filepath.Glob(filepath.Join(state, "chunks", "*", "*"))
	for i, f := range files[:5] {
		b, _ := os.ReadFile(f)
		switch i {
		case 0:
			b = b[:len(b)/2] // truncated
		case 1:
			b[3] ^= 1 // header
		default:
			b[len(b)-1-i*1000] ^= 0x80
		}
		os.Chmod(f, 0o644)
		os.WriteFile(f, b, 0o444)
	}
	var rep cache.ScrubReport
	if err := json.Unmarshal([]byte(mustBasefs(t, "verify", "--repair", "--base", d.mnt, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Corrupt) != 5 || rep.Repaired != 5 || len(rep.Failed) != 0 {
		t.Fatalf("scrub: %+v; want 5 found, 5 repaired", rep)
	}
	if out, errOut, code := basefs(t, "verify", "--state", state); code != 0 {
		t.Fatalf("offline verify after repair: exit %d\n%s%s", code, out, errOut)
	}
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, dg)), data) {
		t.Fatal("wrong bytes after repair")
	}
}

func TestBackgroundFillSurvivesOriginLoss(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	data := append(storetest.Data(11, 10<<20), make([]byte, 6<<20)...)
	p := filepath.Join(dir, "img.raw")
	os.WriteFile(p, data, 0o644)
	dg := importMiB(t, origin, p)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--origin", "dir://"+origin, "--fill-rate", "100000000")
	// The first use: one small read.
	f, err := os.Open(filepath.Join(d.mnt, dg))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	f.ReadAt(b, 0)
	f.Close()
	for deadline := time.Now().Add(15 * time.Second); ; {
		st := d.status()
		if st.Manager != nil && st.Manager.ImagesComplete == 1 {
			if st.Images[0].Present != 10 {
				t.Fatalf("fill completed with %d/10 chunks present", st.Images[0].Present)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background fill did not complete the image: %+v", st.Manager)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The origin goes away; every read still succeeds from the local state.
	if err := os.Rename(origin, origin+".gone"); err != nil {
		t.Fatal(err)
	}
	g, _ := os.OpenFile(filepath.Join(d.mnt, dg), os.O_RDONLY|0x4000, 0)
	defer g.Close()
	buf := alignedBuf(1 << 20)
	for i := range 16 {
		if _, err := g.ReadAt(buf, int64(i)<<20); err != nil || !bytes.Equal(buf, data[i<<20:(i+1)<<20]) {
			t.Fatalf("chunk %d with the origin gone: %v", i, err)
		}
	}
}

func TestBootProfileRecordedPublishedPrefetched(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	data := storetest.Data(12, 16<<20)
	p := filepath.Join(dir, "img.raw")
	os.WriteFile(p, data, 0o644)
	dg := importMiB(t, origin, p)
	state := filepath.Join(dir, "state")
	d := startDaemon(t, state, filepath.Join(dir, "mnt"), "--origin", "dir://"+origin, "--profile-window", "1s", "--fill-rate", "0")
	// "Boot": read chunks 9, 2 and 14 in that order.
	f, _ := os.OpenFile(filepath.Join(d.mnt, dg), os.O_RDONLY|0x4000, 0)
	buf := alignedBuf(4096)
	for _, c := range []int64{9, 2, 14} {
		f.ReadAt(buf, c<<20)
	}
	f.Close()
	prof := filepath.Join(state, "profiles", dg)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if b, err := os.ReadFile(prof); err == nil {
			if string(b) != "basefs-profile 1\nchunks 3\n9\n2\n14\n" {
				t.Fatalf("profile:\n%s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no boot profile recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Published with the manifest; a fresh host prefetches those chunks on lookup, before
	// anything reads.
	pub := filepath.Join(dir, "pub")
	mustBasefs(t, "publish", "--state", origin, "--to", "dir://"+pub, dg)
	if err := os.MkdirAll(filepath.Join(pub, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustBasefs(t, "publish", "--state", state, "--to", "dir://"+pub, dg)
	if _, err := os.Stat(filepath.Join(pub, "profiles", dg)); err != nil {
		t.Fatalf("publish did not carry the profile: %v", err)
	}
	d2 := startDaemon(t, filepath.Join(dir, "state2"), filepath.Join(dir, "mnt2"), "--origin", "dir://"+pub, "--fill-rate", "0")
	if _, err := os.Stat(filepath.Join(d2.mnt, dg)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		st := d2.status()
		if st.Manager.ProfileChunks == 3 {
			if st.Stats.Reads != 0 {
				t.Fatalf("reads %d before the prefetch check", st.Stats.Reads)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile prefetch: %+v", st.Manager)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(d2.log.String(), "prefetching boot profile") {
		t.Fatalf("the prefetch is not logged:\n%s", d2.log)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// alignedBuf returns an n-byte buffer aligned to 4096 for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	return b[off : off+n]
}

// nova.conf's remove_unused_base_images = False reaches the serving process's cache manager:
// an unused image past the minimum age is kept, and the report says why.
func TestNovaConfKeepsUnusedImages(t *testing.T) {
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	da, _, a, _ := twoImages(t, dir, origin, 2)
	nova := filepath.Join(dir, "nova.conf")
	os.WriteFile(nova, []byte("[DEFAULT]\ninstances_path = "+filepath.Join(dir, "instances")+"\n[image_cache]\nremove_unused_base_images = False\nremove_unused_original_minimum_age_seconds = 0\n"), 0o644)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--origin", "dir://"+origin, "--nova-config", nova,
		"--fill-rate", "0", "--scrub-rate", "0")
	if !bytes.Equal(readAll(t, filepath.Join(d.mnt, da)), a) {
		t.Fatal("wrong bytes")
	}
	rep := gc(t, d, false)
	if !actions(rep, map[string]string{da: "keep"}) || !strings.Contains(rep.Images[0].Reason, "remove_unused_base_images") {
		t.Fatalf("cleanup with remove_unused_base_images = False: %+v", rep.Images)
	}
}
