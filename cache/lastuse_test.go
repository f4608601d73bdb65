package cache

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// clock is a time tests move (Config.Now).
type clock struct{ ns atomic.Int64 }

func newClock() *clock               { c := &clock{}; c.ns.Store(time.Now().UnixNano()); return c }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// usesFixture: an origin holding images A and B (4 chunks each, 2 of them shared) and a cache
// over an empty state that reads it, with a moveable clock.
type usesFixture struct {
	dir      string
	origin   *local.Store
	a, b     chunkstore.Digest
	clk      *clock
	inUse    atomic.Pointer[chunkstore.Digest]
	c        *Cache
	m        *Manager
	bSpecial int // B's own chunks
}

func newUsesFixture(t *testing.T) *usesFixture {
	t.Helper()
	ctx := context.Background()
	f := &usesFixture{dir: t.TempDir(), clk: newClock(), bSpecial: 2}
	var err error
	if f.origin, err = local.Open(filepath.Join(f.dir, "origin"), local.Options{}); err != nil {
		t.Fatal(err)
	}
	const cs = chunkstore.MinChunkSize
	image := func(seeds ...uint64) chunkstore.Digest {
		m := &chunkstore.Manifest{Size: int64(len(seeds)) * cs, ChunkSize: cs}
		for _, s := range seeds {
			ch := chunkstore.NewChunk(storetest.Data(s, cs))
			if _, err := f.origin.PutChunk(ctx, ch); err != nil {
				t.Fatal(err)
			}
			m.Chunks = append(m.Chunks, ch.Digest())
		}
		d, err := f.origin.PutManifest(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	f.a, f.b = image(1, 2, 3, 4), image(5, 6, 3, 4)
	f.open(t)
	return f
}

// open starts a cache and manager over the fixture's state (again: a restarted daemon).
func (f *usesFixture) open(t *testing.T) {
	t.Helper()
	st, err := local.Open(filepath.Join(f.dir, "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.c, err = New(Config{Local: st, Origins: []chunkstore.Getter{f.origin}, MemoryBytes: 1, Now: f.clk.now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.c.Close)
	inUse := func(context.Context) (map[chunkstore.Digest][]string, error) {
		if d := f.inUse.Load(); d != nil {
			return map[chunkstore.Digest][]string{*d: {"vm1"}}, nil
		}
		return nil, nil
	}
	if f.m, err = NewManager(f.c, ManagerConfig{MinAge: time.Hour, CacheSize: -1, InUse: inUse}); err != nil {
		t.Fatal(err)
	}
}

func (f *usesFixture) read(t *testing.T, d chunkstore.Digest) {
	t.Helper()
	im, err := f.c.Image(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ReadAt(context.Background(), make([]byte, im.Size()), 0); err != nil {
		t.Fatal(err)
	}
	f.c.Flush()
}

func (f *usesFixture) gc(t *testing.T, dry bool, want map[chunkstore.Digest]string) *GCReport {
	t.Helper()
	rep, err := f.m.GC(context.Background(), dry)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[chunkstore.Digest]string)
	for _, im := range rep.Images {
		got[im.Digest] = im.Action
	}
	if len(got) != len(want) {
		t.Fatalf("cleanup (dry %v) judged %+v; want %v", dry, rep.Images, want)
	}
	for d, a := range want {
		if got[d] != a {
			t.Fatalf("cleanup (dry %v): %s %q; want %q (%+v)", dry, d.Short(), got[d], a, rep.Images)
		}
	}
	return rep
}

// TestCleanupAgesByClock is the manager's half of nova's image cache rules, with time moved
// instead of slept: an image in use is kept however old; an unused one goes after the
// minimum age since its last use — a read counts — with only the chunks no other image
// references; a removed image comes back from the origin.
func TestCleanupAgesByClock(t *testing.T) {
	f := newUsesFixture(t)
	f.inUse.Store(&f.a)
	f.read(t, f.a)
	f.read(t, f.b)
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep", f.b: "keep"}) // young
	f.clk.add(2 * time.Hour)
	dry := f.gc(t, true, map[chunkstore.Digest]string{f.a: "keep", f.b: "remove"})
	if dry.ChunksRemoved != f.bSpecial {
		t.Fatalf("dry run would remove %d chunks; want B's own %d", dry.ChunksRemoved, f.bSpecial)
	}
	if ok, _ := f.c.Local().HasManifest(context.Background(), f.b); !ok {
		t.Fatal("a dry run removed B")
	}
	rep := f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep", f.b: "remove"})
	if rep.ChunksRemoved != f.bSpecial {
		t.Fatalf("cleanup removed %d chunks; want B's own %d (the 2 it shares with A stay)", rep.ChunksRemoved, f.bSpecial)
	}
	// Terminate: A is unused; a read now is its last use, so it stays until the minimum age.
	f.inUse.Store(nil)
	f.read(t, f.a)
	f.clk.add(59 * time.Minute)
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep"})
	f.clk.add(2 * time.Minute)
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "remove"})
	if n := countFiles(t, filepath.Join(f.dir, "state", "chunks")); n != 0 {
		t.Fatalf("%d chunk files left after both images went", n)
	}
	f.read(t, f.b) // removed locally, back from the origin
}

// TestLastUseOneOwner: a read is persisted only by cleanup (uses/<digest>, at the read's
// time), never by a dry run or an answer, and a restarted cache still knows it; nova's utime
// to an older time ages the image exactly (it drops the persisted reads); removal forgets them.
func TestLastUseOneOwner(t *testing.T) {
	f := newUsesFixture(t)
	f.read(t, f.a)
	arrived := f.clk.now()
	f.clk.add(30 * time.Minute)
	f.read(t, f.a) // the last use: arrival + 30 min
	readAt := f.clk.now()
	up := f.c.usePath(f.a)
	f.gc(t, true, map[chunkstore.Digest]string{f.a: "keep"})
	if _, err := f.c.lastUse(f.a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(up); !os.IsNotExist(err) {
		t.Fatalf("a dry run or an answer wrote %s (%v)", up, err)
	}
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep"})
	if fi, err := os.Stat(up); err != nil || !fi.ModTime().Equal(readAt) {
		t.Fatalf("cleanup persisted the read as %v (%v); want %v", fi, err, readAt)
	}
	// Restarted: 59 minutes after the read (89 after arrival) it is still young.
	f.c.Close()
	f.open(t)
	f.clk.add(59 * time.Minute)
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep"})
	im, err := f.c.Image(context.Background(), f.a)
	if err != nil {
		t.Fatal(err)
	}
	if r := im.RecordedUse(); r.Sub(arrived).Abs() > time.Minute {
		t.Fatalf("recorded use %v moved with reads; want the arrival %v (the mount's mtime)", r, arrived)
	}
	// nova's utime to two hours ago: exactly that, reads before it included.
	old := f.clk.now().Add(-2 * time.Hour)
	if err := f.m.Touch(context.Background(), f.a, old); err != nil {
		t.Fatal(err)
	}
	if r := im.RecordedUse(); !r.Equal(old) {
		t.Fatalf("recorded use after utime: %v, want %v", r, old)
	}
	if _, err := os.Stat(up); !os.IsNotExist(err) {
		t.Fatalf("utime left the persisted reads %s (%v)", up, err)
	}
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "remove"})
}

// TestLastUseSurvivesClose: reads since the last cleanup are persisted when the cache closes
// (a handover or a restart), so the next process does not age the image from an older use.
func TestLastUseSurvivesClose(t *testing.T) {
	f := newUsesFixture(t)
	f.clk.add(50 * time.Minute)
	f.read(t, f.a) // no cleanup runs before the process ends
	f.c.Close()
	f.open(t)
	f.clk.add(50 * time.Minute) // 100 min after arrival, 50 after the read
	f.gc(t, false, map[chunkstore.Digest]string{f.a: "keep"})
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
