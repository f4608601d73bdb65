package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// streamImage is an image of n 64 KiB chunks in an origin and (the first local of them) in
// the local state, read once whole so their sub-block digests are known, memory emptied.
type streamImage struct {
	c      *Cache
	im     *Image
	m      *chunkstore.Manifest
	data   []byte
	state  *local.Store
	origin *local.Store
}

func newStreamImage(t *testing.T, n, local_ int) *streamImage {
	t.Helper()
	return newHoleyStreamImage(t, n, local_, nil)
}

// newHoleyStreamImage is newStreamImage with the chunks in holes as holes (zeros, no object).
func newHoleyStreamImage(t *testing.T, n, local_ int, holes map[int]bool) *streamImage {
	t.Helper()
	const cs = 64 << 10
	ctx := context.Background()
	dir := t.TempDir()
	var stores []*local.Store
	for _, name := range []string{"origin", "state"} {
		s, err := local.Open(filepath.Join(dir, name), local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	w := &streamImage{m: &chunkstore.Manifest{Size: int64(n) * cs, ChunkSize: cs}, origin: stores[0], state: stores[1]}
	for i := range n {
		if holes[i] {
			w.data = append(w.data, make([]byte, cs)...)
			w.m.Chunks = append(w.m.Chunks, chunkstore.Digest{})
			continue
		}
		b := storetest.Data(uint64(500+i), cs)
		w.data = append(w.data, b...)
		ch := chunkstore.NewChunk(b)
		for k, s := range stores {
			if k == 1 && i >= local_ {
				continue
			}
			if _, err := s.PutChunk(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		w.m.Chunks = append(w.m.Chunks, ch.Digest())
	}
	var d chunkstore.Digest
	for _, s := range stores {
		var err error
		if d, err = s.PutManifest(ctx, w.m); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Config{Local: w.state, Origins: []chunkstore.Getter{w.origin}, MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w.c = c
	if w.im, err = c.Image(ctx, d); err != nil {
		t.Fatal(err)
	}
	for i := range local_ {
		if holes[i] {
			continue
		}
		if _, err := c.Chunk(ctx, w.m.Chunks[i]); err != nil {
			t.Fatal(err)
		}
	}
	c.mem.purge()
	return w
}

// read reads n bytes at off through ReadStream and checks them.
func (w *streamImage) read(t *testing.T, off int64, n int) {
	t.Helper()
	b, release, err := w.im.ReadStream(context.Background(), make([]byte, n), off)
	defer release()
	if err != nil {
		t.Fatalf("read at %d: %v", off, err)
	}
	if !bytes.Equal(b, w.data[off:off+int64(n)]) {
		t.Fatalf("read at %d: wrong bytes", off)
	}
}

// readAll reads the image in order, 1 MiB at a time.
func (w *streamImage) readAll(t *testing.T) {
	t.Helper()
	for off := int64(0); off < w.m.Size; off += 1 << 20 {
		w.read(t, off, 1<<20)
	}
}

func TestReadStreamReadsAhead(t *testing.T) {
	w := newStreamImage(t, 128, 128) // 8 MiB, all local
	w.readAll(t)
	st := w.c.Stats()
	// The second read starts the read ahead of the third, and so on; the last has nothing after it.
	if st.ReadAheads != 6 {
		t.Fatalf("%d reads were read ahead over 8 sequential reads; want 6 (the 3rd to the 8th)", st.ReadAheads)
	}
	if st.Reads != 8 || st.BytesRead != w.m.Size {
		t.Fatalf("counted %d reads, %d bytes; want the guest's 8 and %d (reads ahead are not counted twice)", st.Reads, st.BytesRead, w.m.Size)
	}
	if st.LocalCorrupt != 0 || st.ReadErrors != 0 || st.Fetches() != 0 {
		t.Fatalf("%d corrupt, %d read errors, %d fetches; want none", st.LocalCorrupt, st.ReadErrors, st.Fetches())
	}
}

// Holes are counted once, whether a read is served by ReadAt or from a read ahead.
func TestReadStreamCountsHoles(t *testing.T) {
	holes := map[int]bool{}
	for i := 0; i < 128; i += 3 {
		holes[i] = true
	}
	w := newHoleyStreamImage(t, 128, 128, holes)
	const n = 96 << 10 // reads that end inside chunks
	var want int64
	for off := int64(0); off+n <= w.m.Size; off += n {
		w.read(t, off, n)
		for b := off; b < off+n; b += 32 << 10 { // n and the chunk size are multiples of 32 KiB
			if holes[int(b/(64<<10))] {
				want += 32 << 10
			}
		}
	}
	st := w.c.Stats()
	if st.ReadAheads == 0 {
		t.Fatal("the sequential reads were not read ahead")
	}
	if reads := w.m.Size / n; st.HoleBytes != want || st.BytesRead != reads*n {
		t.Fatalf("counted %d hole bytes of %d read; want %d of %d", st.HoleBytes, st.BytesRead, want, reads*n)
	}
}

func TestReadStreamRandomNotAhead(t *testing.T) {
	w := newStreamImage(t, 128, 128)
	for _, off := range []int64{5, 40, 2, 90, 17, 66, 30, 120} {
		w.read(t, off*64<<10, 64<<10)
	}
	if got := w.c.Stats().ReadAheads; got != 0 {
		t.Fatalf("reads out of order were read ahead %d times", got)
	}
}

// A read ahead never fetches: over cold chunks the stream's reads fetch them themselves.
func TestReadStreamColdNotAhead(t *testing.T) {
	w := newStreamImage(t, 64, 16) // the first 1 MiB local, the rest only in the origin
	w.readAll(t)
	st := w.c.Stats()
	if st.ReadAheads != 0 {
		t.Fatalf("%d cold reads were read ahead", st.ReadAheads)
	}
	if st.Fetches() != 48 {
		t.Fatalf("%d chunks fetched; want the 48 the reads asked for", st.Fetches())
	}
}

// A chunk damaged on disk inside a range read ahead is found by the read ahead (it verifies
// as ReadAt does), quarantined and repaired from the origin; the stream gets good bytes.
func TestReadStreamAheadVerifies(t *testing.T) {
	w := newStreamImage(t, 64, 64)
	const bad = 40 // in the 3rd MiB: read ahead after the 2nd read
	p := w.state.ChunkPath(w.m.Chunks[bad])
	obj, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	obj[chunkstore.ObjectHeaderSize+20000] ^= 0x55
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, obj, 0o444); err != nil {
		t.Fatal(err)
	}
	w.readAll(t)
	if st := w.c.Stats(); st.LocalCorrupt != 1 || st.Repairs != 1 || st.ReadAheads == 0 {
		t.Fatalf("damaged chunk: %d detected, %d repaired, %d reads ahead; want 1, 1, some", st.LocalCorrupt, st.Repairs, st.ReadAheads)
	}
}
