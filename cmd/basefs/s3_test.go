package main

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/s3"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// The fleet-tier tests: a real one-node Ceph RGW (scripts/start-ceph.sh, one per test
// process), several basefs "hosts" on one machine — each its own daemon, state directory and
// mount — reading through the tiers local → s3:// → dir://.

// s3Tier starts RGW, puts its AWS_* environment into this process (the daemons and CLI runs
// inherit it) and returns a fresh s3:// location of the test's own and a Store on it.
func s3Tier(t *testing.T) (string, *s3.Store) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	for k, v := range s3test.Start(t) {
		t.Setenv(k, v)
	}
	cfg, url := s3test.Config(t)
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return url, st
}

// originStats returns the counters of the origin whose name starts with prefix.
func originStats(t *testing.T, st *control.Status, prefix string) cache.OriginSnapshot {
	t.Helper()
	for _, o := range st.Stats.Origins {
		if strings.HasPrefix(o.Origin, prefix) {
			return o
		}
	}
	t.Fatalf("no origin %s in status: %+v", prefix, st.Stats.Origins)
	return cache.OriginSnapshot{}
}

// noFill are the daemon flags that make fetch counts exact: only reads fetch.
var noFill = []string{"--fill-rate", "0", "--profile-window", "0", "--scrub-rate", "0"}

// TestS3PublishFourHostsConcurrent publishes an image to RGW; then 4 hosts with empty states
// and the origins s3:// then dir:// read it at the same time, 4 readers each. Every host gets
// every chunk from RGW exactly once, nothing from the dir:// origin, and the right bytes.
func TestS3PublishFourHostsConcurrent(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	url, _ := s3Tier(t)
	dir := t.TempDir()
	const size = 16<<20 + 4096 // 17 chunks
	img, want := makeImage(t, dir, size, 41)
	build := filepath.Join(dir, "build")
	digest := importMiB(t, build, img)
	out := mustBasefs(t, "publish", "--state", build, "--to", url, digest)
	if !strings.Contains(out, "17 chunks, 17 new") {
		t.Fatalf("publish to %s: %s", url, out)
	}
	// Publishing again copies nothing (put-if-absent; HasChunk first).
	if out := mustBasefs(t, "publish", "--state", build, "--to", url, digest); !strings.Contains(out, "17 chunks, 0 new") {
		t.Fatalf("second publish: %s", out)
	}
	var hosts []*daemon
	for i := range 4 {
		args := append([]string{"--origin", url, "--origin", "dir://" + build}, noFill...)
		hosts = append(hosts, startDaemon(t, filepath.Join(dir, fmt.Sprint("state", i)), filepath.Join(dir, fmt.Sprint("mnt", i)), args...))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 4 {
			wg.Go(func() {
				if got := shaFile(t, filepath.Join(h.mnt, digest)); got != want {
					t.Errorf("host %s read other bytes", h.mnt)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	var fromS3, fromDir int64
	for _, h := range hosts {
		st := h.status()
		s, d := originStats(t, st, "s3://"), originStats(t, st, "dir://")
		if s.Fetches != 17 || s.Corrupt != 0 || s.Errors != 0 || d.Fetches != 0 || st.Stats.ManifestFetches != 1 {
			t.Errorf("host %s: s3 %+v, dir %+v, manifests %d; want 17 chunks from s3 (each once), none from dir, 1 manifest",
				h.mnt, s, d, st.Stats.ManifestFetches)
		}
		if s.HitRatio != 1 {
			t.Errorf("host %s: s3 hit ratio %v; want 1", h.mnt, s.HitRatio)
		}
		fromS3 += s.Bytes
		fromDir += d.Bytes
	}
	if fromS3 != 4*size || fromDir != 0 {
		t.Fatalf("bytes from s3 %d, from dir %d; want %d and 0", fromS3, fromDir, 4*size)
	}
	t.Logf("4 hosts × 4 readers of a %d-byte image: %v; bytes from RGW %d (%d per host), from the dir origin %d",
		size, elapsed.Round(time.Millisecond), fromS3, fromS3/4, fromDir)
}

// TestS3WriteBackHostsInTurn: an image only a dir:// origin has; 4 hosts with --write-back
// read it one after another. The first takes every chunk from dir:// and writes it back to
// RGW (and the manifest); the later hosts take every chunk from RGW and nothing from dir://.
func TestS3WriteBackHostsInTurn(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	url, store := s3Tier(t)
	dir := t.TempDir()
	const size = 12 << 20 // 12 chunks
	img, want := makeImage(t, dir, size, 42)
	src := filepath.Join(dir, "src")
	digest := importMiB(t, src, img)
	var fromS3, fromDir int64
	for i := range 4 {
		args := append([]string{"--origin", url, "--origin", "dir://" + src, "--write-back"}, noFill...)
		h := startDaemon(t, filepath.Join(dir, fmt.Sprint("state", i)), filepath.Join(dir, fmt.Sprint("mnt", i)), args...)
		if got := shaFile(t, filepath.Join(h.mnt, digest)); got != want {
			t.Fatalf("host %d read other bytes", i)
		}
		st := h.status()
		if i == 0 {
			deadline := time.Now().Add(20 * time.Second)
			for st.Stats.WriteBack == nil || st.Stats.WriteBack.Chunks < 12 || st.Stats.WriteBack.Manifests < 1 {
				if time.Now().After(deadline) {
					t.Fatalf("host 0 wrote back %+v; want 12 chunks and 1 manifest", st.Stats.WriteBack)
				}
				time.Sleep(50 * time.Millisecond)
				st = h.status()
			}
		}
		s, d := originStats(t, st, "s3://"), originStats(t, st, "dir://")
		switch {
		case i == 0 && (s.Fetches != 0 || s.Misses != 12 || d.Fetches != 12):
			t.Fatalf("host 0: s3 %+v, dir %+v; want 12 misses at s3 and 12 fetches from dir", s, d)
		case i > 0 && (s.Fetches != 12 || d.Fetches != 0 || st.Stats.WriteBack.Chunks != 0):
			t.Fatalf("host %d: s3 %+v, dir %+v, write-back %+v; want every chunk from s3, none from dir, nothing written back",
				i, s, d, st.Stats.WriteBack)
		}
		fromS3 += s.Bytes
		fromDir += d.Bytes
		h.stop()
	}
	n := 0
	store.WalkChunks(context.Background(), func(chunkstore.Digest) error { n++; return nil })
	if n != 12 || fromDir != size || fromS3 != 3*size {
		t.Fatalf("RGW holds %d chunks; bytes from dir %d, from RGW %d; want 12, %d, %d", n, fromDir, fromS3, size, 3*size)
	}
	t.Logf("write-back, 4 hosts in turn, %d-byte image: from the dir origin %d bytes (once), from RGW %d", size, fromDir, fromS3)
}

// TestS3OutageFailoverAndBack: RGW stops while hosts read. Chunks already local keep working;
// the others fail over to the dir:// origin (host A) or, with no other origin, fail with EIO
// within a bound (host B), never with wrong bytes; when RGW is back host B uses it again
// without a restart.
func TestS3OutageFailoverAndBack(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	url, _ := s3Tier(t)
	dir := t.TempDir()
	const size = 8 << 20
	img, _ := makeImage(t, dir, size, 43)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(dir, "build")
	digest := importMiB(t, build, img)
	mustBasefs(t, "publish", "--state", build, "--to", url, digest)
	a := startDaemon(t, filepath.Join(dir, "a"), filepath.Join(dir, "mnta"), append([]string{"--origin", url, "--origin", "dir://" + build}, noFill...)...)
	b := startDaemon(t, filepath.Join(dir, "b"), filepath.Join(dir, "mntb"), append([]string{"--origin", url}, noFill...)...)
	check := func(h *daemon, off int64, n int) error {
		got, err := preadFile(t, filepath.Join(h.mnt, digest), off, n)
		if err == nil && string(got) != string(data[off:off+int64(n)]) {
			t.Fatalf("%s: wrong bytes at %d", h.mnt, off)
		}
		return err
	}
	for _, h := range []*daemon{a, b} {
		if err := check(h, 0, 2<<20); err != nil { // chunks 0 and 1 become local
			t.Fatal(err)
		}
	}
	s3test.StopRGW(t)
	back := false
	defer func() {
		if !back {
			s3test.StartRGW(t)
		}
	}()
	for _, h := range []*daemon{a, b} {
		if err := check(h, 0, 2<<20); err != nil {
			t.Fatalf("%s: a local chunk failed with RGW down: %v", h.mnt, err)
		}
	}
	start := time.Now()
	if err := check(a, 2<<20, 6<<20); err != nil {
		t.Fatalf("host A did not fail over to dir://: %v\n%s", err, a.log)
	}
	t.Logf("host A: 6 chunks with RGW down, from dir:// in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	err = check(b, 4<<20, 4096)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("host B read with RGW down and no other origin: %v; want EIO", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("host B's failing read took %v; want a bound", el)
	}
	t.Logf("host B: EIO after %v", time.Since(start).Round(time.Millisecond))
	sa := a.status()
	// (Kernel readahead may have fetched a chunk past the first 2 MiB before the outage.)
	if s, d := originStats(t, sa, "s3://"), originStats(t, sa, "dir://"); s.Errors == 0 || d.Fetches < 4 || s.Fetches+d.Fetches != 8 {
		t.Fatalf("host A: s3 %+v, dir %+v; want s3 errors counted and the chunks not local from dir", s, d)
	}
	s3test.StartRGW(t)
	back = true
	deadline := time.Now().Add(15 * time.Second)
	for check(b, 4<<20, 4096) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("host B never used RGW again after it came back\n%s", b.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := check(b, 0, size); err != nil {
		t.Fatalf("host B after RGW came back: %v", err)
	}
	if s := originStats(t, b.status(), "s3://"); s.Fetches != 8 {
		t.Fatalf("host B: s3 %+v; want all 8 chunks from s3 in the end", s)
	}
}

// TestS3CorruptObjectNextTier: objects in RGW overwritten with wrong bytes (another chunk's
// valid object; garbage) are detected, never served, counted as corruption of the s3 tier,
// and the dir:// tier serves those chunks.
func TestS3CorruptObjectNextTier(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	url, store := s3Tier(t)
	dir := t.TempDir()
	const size = 6 << 20
	img, want := makeImage(t, dir, size, 44)
	build := filepath.Join(dir, "build")
	digest := importMiB(t, build, img)
	mustBasefs(t, "publish", "--state", build, "--to", url, digest)
	d, _ := chunkstore.ParseDigest(digest)
	m, err := store.GetManifest(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	other := s3test.Read(t, store, store.ChunkKey(m.Chunks[5]))
	s3test.Overwrite(t, store, store.ChunkKey(m.Chunks[1]), other)
	s3test.Overwrite(t, store, store.ChunkKey(m.Chunks[3]), []byte("garbage"))
	h := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), append([]string{"--origin", url, "--origin", "dir://" + build}, noFill...)...)
	if got := shaFile(t, filepath.Join(h.mnt, digest)); got != want {
		t.Fatal("wrong bytes served")
	}
	st := h.status()
	if s, dd := originStats(t, st, "s3://"), originStats(t, st, "dir://"); s.Corrupt != 2 || s.Fetches != 4 || dd.Fetches != 2 {
		t.Fatalf("s3 %+v, dir %+v; want 2 corrupt at s3, 4 chunks from s3, 2 from dir", s, dd)
	}
	h.stop()
	if out, errOut, code := basefs(t, "verify", "--state", h.state); code != 0 {
		t.Fatalf("verify of the host's state: exit %d\n%s%s", code, out, errOut)
	}
}

// TestS3WriteBackGlanceRawHostsInTurn: a raw Glance image without basefs_manifest; 4 hosts
// with --write-back and the tiers s3:// then Glance read it one after another, each with an
// empty state. Host 1 reads it lazily from Glance by range (background fill on) and, once it
// is complete and matches os_hash_value, writes its chunks and its manifest to RGW and records
// the manifest as the image's basefs_manifest in Glance. Hosts 2–4 find the property and take
// every chunk from RGW: Glance serves each
// chunk once in total, and every host reads the image's bytes.
func TestS3WriteBackGlanceRawHostsInTurn(t *testing.T) {
	url, store := s3Tier(t)
	ep := glancetest.Start(t)
	dir := t.TempDir()
	const dataBytes, zeroBytes = 20 << 20, 4 << 20
	const dataChunks = dataBytes / chunkstore.DefaultChunkSize // a provisional image's chunks are of the default size
	id, data := glanceImage(t, dir, 45, dataBytes, zeroBytes)
	want := sha256.Sum256(data)
	var digest string
	var fromGlance, fromS3 int64
	var figures []string
	for i := range 4 {
		args := []string{"--origin", url, "--glance-endpoint", ep, "--write-back",
			"--fill-rate", "1000000000", "--profile-window", "0", "--scrub-rate", "0"}
		h := startDaemon(t, filepath.Join(dir, fmt.Sprint("state", i)), filepath.Join(dir, fmt.Sprint("mnt", i)), args...)
		start := time.Now()
		st, err := ensureGlance(t, h, id)
		if err != nil {
			t.Fatalf("host %d: ensure glance://%s: %v\n%s", i, id, err, h.log)
		}
		if i == 0 && !st.Provisional {
			t.Fatalf("host 0: ensure %+v; want a provisional image (nothing in RGW yet)", st)
		}
		if i > 0 && (st.Provisional || st.Digest == nil || st.Digest.String() != digest) {
			t.Fatalf("host %d: ensure %+v; want the manifest %s basefs_manifest names\n%s", i, st, digest, h.log)
		}
		if got := shaFile(t, filepath.Join(h.mnt, st.Name)); got != want {
			t.Fatalf("host %d read other bytes", i)
		}
		elapsed := time.Since(start)
		if i == 0 {
			digest = waitDigest(t, h, id)
			deadline := time.Now().Add(30 * time.Second)
			for wb := h.status().Stats.WriteBack; wb == nil || wb.Entries < 1; wb = h.status().Stats.WriteBack {
				if time.Now().After(deadline) {
					t.Fatalf("host 0 wrote back %+v; want basefs_manifest recorded\n%s", wb, h.log)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		stat := h.status()
		_, g, gc := glanceOrigin(stat)
		s, wb := originStats(t, stat, "s3://"), stat.Stats.WriteBack
		switch {
		case gc != 0 || s.Corrupt != 0:
			t.Fatalf("host %d: corruption counted: Glance %d, s3 %+v", i, gc, s)
		case i == 0 && (g != dataBytes+zeroBytes || s.Fetches != 0 || wb.Chunks != dataChunks || wb.Manifests != 1 || wb.Failed != 0 || wb.Dropped != 0):
			t.Fatalf("host 0: %d bytes from Glance, s3 %+v, write-back %+v; want the image once from Glance, %d chunks and 1 manifest written back", g, s, wb, dataChunks)
		case i > 0 && (g != 0 || s.Fetches != dataChunks || s.Bytes != dataBytes || wb.Chunks != 0 || wb.Entries != 0):
			t.Fatalf("host %d: %d bytes from Glance, s3 %+v, write-back %+v; want every chunk from RGW once, nothing from Glance, nothing written back\n%s", i, g, s, wb, h.log)
		}
		fromGlance += g
		fromS3 += s.Bytes
		figures = append(figures, fmt.Sprintf("host %d: Glance %d B, RGW %d B (%d chunks), read in %v", i+1, g, s.Bytes, s.Fetches, elapsed.Round(time.Millisecond)))
		h.stop()
	}
	n := 0
	store.WalkChunks(context.Background(), func(chunkstore.Digest) error { n++; return nil })
	if p := glancetest.Meta(t, id)[glance.ManifestProperty]; p != digest {
		t.Fatalf("Glance image's %s is %v; want %s", glance.ManifestProperty, p, digest)
	}
	if _, err := store.GetGlanceIndexBytes(context.Background(), id); !chunkstore.IsNotFound(err) {
		t.Fatalf("RGW's Glance index holds an entry (%v): hosts no longer write one", err)
	}
	if n != dataChunks || fromGlance != dataBytes+zeroBytes || fromS3 != 3*dataBytes {
		t.Fatalf("RGW holds %d chunks; bytes from Glance %d, from RGW %d; want %d, %d, %d", n, fromGlance, fromS3, dataChunks, dataBytes+zeroBytes, 3*dataBytes)
	}
	t.Logf("write-back of a raw Glance image (%d bytes, %d of data), 4 hosts in turn:\n  %s", dataBytes+zeroBytes, dataBytes, strings.Join(figures, "\n  "))
}

// TestS3GlanceIndexForgeryNotServed: a writer of the shared tier (a real S3 client with the
// tier's credentials) plants, for a real Glance image, a manifest of its own bytes whose Source
// claims that image and its os_hash_value, its chunks, and a Glance index entry naming it. No
// host serves those bytes: a host finds no basefs_manifest and reads the image from Glance
// (lazily), counting and logging the entry; once a host with write-back completed the image
// and recorded basefs_manifest, the next host takes that manifest, and still reports the
// forged entry.
func TestS3GlanceIndexForgeryNotServed(t *testing.T) {
	url, store := s3Tier(t)
	ep := glancetest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	id, data := glanceImage(t, dir, 46, 3<<20, 0)
	sum := sha512.Sum512(data)
	forged := storetest.Data(4646, len(data))
	m := &chunkstore.Manifest{Size: int64(len(forged)), ChunkSize: chunkstore.DefaultChunkSize,
		Source: chunkstore.Source{Format: "raw", GlanceID: id, HashAlgo: "sha512", HashValue: hex.EncodeToString(sum[:])}}
	for off := 0; off < len(forged); off += chunkstore.DefaultChunkSize {
		ch := chunkstore.NewChunk(forged[off:min(len(forged), off+chunkstore.DefaultChunkSize)])
		if _, err := store.PutChunk(ctx, ch); err != nil {
			t.Fatal(err)
		}
		m.Chunks = append(m.Chunks, ch.Digest())
	}
	fd, err := store.PutManifest(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	e := &glanceimg.GlanceIndexEntry{Manifest: fd, HashAlgo: "sha512", HashValue: m.Source.HashValue}
	if _, err := store.PutGlanceIndexBytes(ctx, id, e.Encode()); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	host := func(n int, extra ...string) (*daemon, *control.GlanceStatus) {
		h := startDaemon(t, filepath.Join(dir, fmt.Sprint("state", n)), filepath.Join(dir, fmt.Sprint("mnt", n)),
			append([]string{"--origin", url, "--glance-endpoint", ep}, extra...)...)
		st, err := ensureGlance(t, h, id)
		if err != nil {
			t.Fatalf("host %d: ensure: %v\n%s", n, err, h.log)
		}
		if st.Digest != nil && *st.Digest == fd {
			t.Fatalf("host %d: ensure named the forged manifest %s", n, fd)
		}
		if got := shaFile(t, filepath.Join(h.mnt, st.Name)); got != want {
			t.Fatalf("host %d served other bytes than the Glance image's", n)
		}
		if l := h.status().Glance.Layer; l == nil || l.TierIndexIgnored != 1 {
			t.Fatalf("host %d: status %+v; want the forged entry counted once", n, l)
		}
		if !strings.Contains(h.log.String(), "a tier writer cannot vouch for a Glance image") {
			t.Fatalf("host %d did not log the forged entry:\n%s", n, h.log)
		}
		return h, st
	}
	h, st := host(0, append([]string{"--write-back"}, noFill...)...)
	if !st.Provisional {
		t.Fatalf("host 0: ensure %+v; want the image read from Glance lazily", st)
	}
	digest := waitDigest(t, h, id) // read whole above: it completes, is written back and recorded
	for deadline := time.Now().Add(30 * time.Second); glancetest.Meta(t, id)[glance.ManifestProperty] != digest; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("host 0 did not record %s=%s\n%s", glance.ManifestProperty, digest, h.log)
		}
	}
	h.stop()
	_, st = host(1, noFill...)
	if st.Provisional || st.Digest == nil || st.Digest.String() != digest {
		t.Fatalf("host 1: ensure %+v; want the manifest %s basefs_manifest names", st, digest)
	}
}
