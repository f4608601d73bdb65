package cache

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/basefs/basefs/chunkstore"
)

// TestRepairOneOwner: whoever finds a local chunk corrupt — a read of some of its sub-blocks,
// a read of the whole chunk, scrub — the chunk is quarantined, fetched again, counted and
// the read served good bytes; if the origin cannot give it again the read fails (never wrong
// bytes), counted as corrupt and not as repaired.
func TestRepairOneOwner(t *testing.T) {
	ctx := context.Background()
	f := newUsesFixture(t) // A: 4 chunks of 64 KiB in the origin
	im, err := f.c.Image(ctx, f.a)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, im.Size())
	if _, err := im.ReadAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	f.c.Flush()
	if _, err := im.ReadAt(ctx, make([]byte, im.Size()), 0); err != nil { // from disk: sub-block digests known
		t.Fatal(err)
	}
	m := im.Manifest()
	corrupt := func(i int) {
		t.Helper()
		f.c.Flush()
		p := f.c.Local().ChunkPath(m.Chunks[i])
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-100] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(how string, repairs, corrupt int64) {
		t.Helper()
		s := f.c.Stats()
		q, _ := os.ReadDir(f.c.QuarantineDir())
		if s.Repairs != repairs || s.LocalCorrupt != corrupt || int64(len(q)) != corrupt {
			t.Fatalf("%s: %d repairs, %d corrupt, %d quarantined; want %d, %d, %d", how, s.Repairs, s.LocalCorrupt, len(q), repairs, corrupt, corrupt)
		}
	}
	cs := m.ChunkSize
	p := make([]byte, 4096)
	if _, err := im.ReadAt(ctx, p, 0); err != nil || f.c.Stats().SubBlockReads == 0 {
		t.Fatalf("a small read of a verified local chunk did not read by sub-blocks: %v", err)
	}
	corrupt(0)
	if _, err := im.ReadAt(ctx, p, cs-4096); err != nil || !bytes.Equal(p, want[cs-4096:cs]) {
		t.Fatalf("sub-block read of a corrupt chunk: %v", err)
	}
	check("sub-block read", 1, 1)
	corrupt(1)
	f.c.SetVerify(true) // forgets sub-block digests: the next read verifies the whole chunk
	p = make([]byte, cs)
	if _, err := im.ReadAt(ctx, p, cs); err != nil || !bytes.Equal(p, want[cs:2*cs]) {
		t.Fatalf("whole read of a corrupt chunk: %v", err)
	}
	check("whole-chunk read", 2, 2)
	corrupt(2)
	rep, err := f.m.Scrub(ctx, 0)
	if err != nil || rep.Repaired != 1 || len(rep.Corrupt) != 1 || rep.Corrupt[0] != m.Chunks[2] {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
	check("scrub", 3, 3)
	corrupt(3)
	if err := f.origin.DeleteChunk(ctx, m.Chunks[3]); err != nil {
		t.Fatal(err)
	}
	f.c.SetVerify(true)
	if n, err := im.ReadAt(ctx, p, 3*cs); err == nil || !chunkstore.IsNotFound(err) || n != 0 {
		t.Fatalf("read of a corrupt chunk no origin has: %d bytes, %v; want it to fail, not found", n, err)
	}
	check("unrepairable", 3, 4)
}
