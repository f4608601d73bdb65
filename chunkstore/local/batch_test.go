package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// sysRecorder stands in for the package's durability and visibility system calls for one test
// (fault injection): it records their order and can fail one of them.
type sysRecorder struct {
	mu     sync.Mutex
	events []string // "fsync", "syncfs", "link <name>", and what the test notes itself
	// failSyncfs fails the nth syncfs (1-based; 0: none); failLink the nth link.
	failSyncfs, failLink int
	syncfsN, linkN       int
}

var errInjected = errors.New("injected fault")

func recordSys(t *testing.T) *sysRecorder {
	r := &sysRecorder{}
	oldFsync, oldSyncfs, oldLink := fsync, syncfs, link
	t.Cleanup(func() { fsync, syncfs, link = oldFsync, oldSyncfs, oldLink })
	fsync = func(f *os.File) error {
		r.note("fsync")
		return oldFsync(f)
	}
	syncfs = func(f *os.File) error {
		r.mu.Lock()
		r.syncfsN++
		fail := r.syncfsN == r.failSyncfs
		r.events = append(r.events, "syncfs")
		r.mu.Unlock()
		if fail {
			return errInjected
		}
		return oldSyncfs(f)
	}
	link = func(old, new string) error {
		r.mu.Lock()
		r.linkN++
		fail := r.linkN == r.failLink
		r.events = append(r.events, "link "+filepath.Base(new))
		r.mu.Unlock()
		if fail {
			return &os.LinkError{Op: "link", Old: old, New: new, Err: syscall.ENOSPC}
		}
		return oldLink(old, new)
	}
	return r
}

func (r *sysRecorder) note(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *sysRecorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// batchOf puts n chunks (seeds from seed) into a new batch and returns it with the chunks.
func batchOf(t *testing.T, s *Store, r *sysRecorder, seed uint64, n int) (*Batch, []*chunkstore.Chunk) {
	t.Helper()
	b, err := s.NewBatch()
	if err != nil {
		t.Fatal(err)
	}
	var chs []*chunkstore.Chunk
	for i := range n {
		c := chunkstore.NewChunk(storetest.Data(seed+uint64(i), 8192))
		if added, _, err := b.PutChunk(context.Background(), c); err != nil || !added {
			t.Fatalf("batch put %d = %v, %v", i, added, err)
		}
		if r != nil {
			r.note("put " + c.Digest().String())
		}
		chs = append(chs, c)
	}
	return b, chs
}

// visible returns the chunks whose objects are in the store, checking each decodes whole and
// verifies: a visible object is never a partial one.
func visible(t *testing.T, s *Store) []chunkstore.Digest {
	t.Helper()
	var ds []chunkstore.Digest
	ctx := context.Background()
	err := s.WalkChunks(ctx, func(d chunkstore.Digest) error {
		if _, err := s.GetChunk(ctx, d); err != nil {
			if chunkstore.IsNotFound(err) {
				return nil // deleted meanwhile
			}
			return fmt.Errorf("visible object does not verify: %w", err)
		}
		ds = append(ds, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func tempFiles(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestBatchDurableBeforeVisible: a batch's objects get their names only after one barrier
// that follows every object's write, and Commit returns only after a barrier that follows
// every name: two barriers for the batch, none per object.
func TestBatchDurableBeforeVisible(t *testing.T) {
	r := recordSys(t)
	s := openStore(t)
	before := s.Syncs()
	b, chs := batchOf(t, s, r, 10, 8)
	r.note("commit")
	created, err := b.Commit(context.Background())
	if err != nil || len(created) != len(chs) {
		t.Fatalf("commit = %d created, %v; want %d", len(created), err, len(chs))
	}
	ev := r.log()
	want := []string{"syncfs"}
	for range chs {
		want = append(want, "link")
	}
	want = append(want, "syncfs")
	at := slices.Index(ev, "commit")
	var got []string
	for i, e := range ev[at+1:] {
		if i > 0 && e == ev[at+i] {
			continue // a link retried once its shard directory exists
		}
		got = append(got, strings.Fields(e)[0])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("commit did %v; want the data barrier, the links, then the names' barrier: %v", got, want)
	}
	for _, e := range ev[:at] {
		if e == "fsync" || e == "syncfs" || strings.HasPrefix(e, "link") {
			t.Fatalf("a put did %q: objects must stay unsynced and invisible until Commit", e)
		}
	}
	if n := s.Syncs() - before; n != 2 {
		t.Errorf("Syncs counted %d barriers for one batch; want 2", n)
	}
	if got := visible(t, s); len(got) != len(chs) {
		t.Errorf("%d objects visible after commit; want %d", len(got), len(chs))
	}
	if n := tempFiles(t, s); n != 0 {
		t.Errorf("%d temp files left after commit", n)
	}
}

// TestBatchFailureLeavesNothing: a commit that fails before or while linking leaves no
// object of the batch in the store, whole or partial, and nothing in tmp/; one whose last
// barrier fails says so and leaves only whole objects.
func TestBatchFailureLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		failSyncfs, failLink int
		wantVisible          int
	}{
		{name: "data barrier fails", failSyncfs: 1},
		{name: "first link fails", failLink: 1},
		{name: "fifth link fails", failLink: 5},
		{name: "names barrier fails", failSyncfs: 2, wantVisible: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			// An object already in the store (from an earlier batch) must survive the rollback.
			old := chunkstore.NewChunk(storetest.Data(99, 8192))
			if _, err := s.PutChunk(context.Background(), old); err != nil {
				t.Fatal(err)
			}
			r := recordSys(t)
			r.failSyncfs, r.failLink = tc.failSyncfs, tc.failLink
			b, _ := batchOf(t, s, nil, 20, 8)
			if _, err := b.Commit(context.Background()); !errors.Is(err, errInjected) && !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("commit = %v; want the injected fault", err)
			}
			got := visible(t, s)
			if !slices.Contains(got, old.Digest()) {
				t.Fatal("a failed batch removed an object it did not create")
			}
			if len(got)-1 != tc.wantVisible {
				t.Errorf("%d of the batch's objects visible after the failure; want %d", len(got)-1, tc.wantVisible)
			}
			if n := tempFiles(t, s); n != 0 {
				t.Errorf("%d temp files left after the failure", n)
			}
		})
	}
}

// TestBatchConcurrentCommits: batches of overlapping chunks commit at the same time, beside
// deletes of the same chunks (the cache manager's cleanup and eviction): each chunk is created
// by exactly one batch, no object is ever visible partial, and tmp/ ends empty.
func TestBatchConcurrentCommits(t *testing.T) {
	const batches, perBatch = 4, 24
	for _, withDeletes := range []bool{false, true} {
		name := "commits only"
		if withDeletes {
			name = "commits and deletes"
		}
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			ctx := context.Background()
			var bs []*Batch
			all := map[chunkstore.Digest]bool{}
			for i := range batches {
				// Batch i holds chunks 8i … 8i+23: each overlaps its neighbours.
				b, chs := batchOf(t, s, nil, uint64(8*i), perBatch)
				bs = append(bs, b)
				for _, c := range chs {
					all[c.Digest()] = true
				}
			}
			created := make([][]chunkstore.Digest, batches)
			errs := make([]error, batches)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, b := range bs {
				wg.Go(func() {
					<-start
					created[i], errs[i] = b.Commit(ctx)
				})
			}
			stopDeletes := make(chan struct{})
			var dwg sync.WaitGroup
			if withDeletes {
				dwg.Go(func() {
					<-start
					for {
						for d := range all {
							select {
							case <-stopDeletes:
								return
							default:
							}
							if err := s.DeleteChunk(ctx, d); err != nil {
								t.Error(err)
								return
							}
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(stopDeletes)
			dwg.Wait()
			by := map[chunkstore.Digest]int{}
			for i := range batches {
				if errs[i] != nil {
					t.Fatalf("batch %d: %v", i, errs[i])
				}
				for _, d := range created[i] {
					by[d]++
				}
			}
			for d := range all {
				if withDeletes {
					if by[d] < 1 {
						t.Errorf("chunk %s created by no batch", d.Short())
					}
				} else if by[d] != 1 {
					t.Errorf("chunk %s created by %d batches; want exactly one", d.Short(), by[d])
				}
			}
			got := visible(t, s) // every visible object verifies whole
			if !withDeletes && len(got) != len(all) {
				t.Errorf("%d objects visible; want %d", len(got), len(all))
			}
			if n := tempFiles(t, s); n != 0 {
				t.Errorf("%d temp files left", n)
			}
		})
	}
}

// TestBatchOfPresentChunksBarriers: a batch whose chunks a put found in the store already
// (perhaps just linked by a writer whose barrier is still to come) still ends in a barrier,
// so Commit's promise — durable on return — holds for them too; an empty batch costs nothing.
func TestBatchOfPresentChunksBarriers(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	c := chunkstore.NewChunk(storetest.Data(7, 8192))
	if _, err := s.PutChunk(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := recordSys(t)
	b, _ := s.NewBatch()
	if added, _, err := b.PutChunk(ctx, c); err != nil || added {
		t.Fatalf("batch put of a present chunk = %v, %v; want false, nil", added, err)
	}
	if created, err := b.Commit(ctx); err != nil || len(created) != 0 {
		t.Fatalf("commit = %v, %v", created, err)
	}
	if ev := r.log(); !slices.Equal(ev, []string{"syncfs"}) {
		t.Errorf("commit of a batch of present chunks did %v; want one syncfs", ev)
	}
	b, _ = s.NewBatch()
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := r.log(); len(ev) != 1 {
		t.Errorf("commit of an empty batch did %v; want nothing", ev[1:])
	}
}
