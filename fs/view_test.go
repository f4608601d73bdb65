package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestBytesAndViews(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	e := newEnv(t, envOptions{})
	size := int64(5<<20 + 4096*3)
	d, raw := e.importImage(size, 1, [2]int64{0, 1 << 20}, [2]int64{2<<20 + 100, 3 << 20})

	img := e.path(d.String())
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size || fi.Mode().Perm() != 0o440 {
		t.Fatalf("%s: size %d mode %v; want %d, 0440", d.Short(), fi.Size(), fi.Mode(), size)
	}
	if fileSHA(t, img) != fileSHA(t, raw) {
		t.Fatal("sha256 of the mounted image differs from the source")
	}
	// The resized view: N GiB, the image, then zeros.
	v := e.path(d.String() + "_1")
	fi, err = os.Stat(v)
	if err != nil || fi.Size() != 1<<30 {
		t.Fatalf("view _1: %v, size %d; want 1 GiB", err, fi.Size())
	}
	f, _ := os.Open(v)
	head := make([]byte, size)
	io.ReadFull(f, head)
	src, _ := os.ReadFile(raw)
	if !bytes.Equal(head, src) {
		t.Fatal("the view does not start with the image")
	}
	tail := make([]byte, 1<<20)
	for off := size; off < 1<<30; off += 97 << 20 {
		n, _ := f.ReadAt(tail, off)
		if !chunkstore.IsZeroes(tail[:n]) || n == 0 {
			t.Fatalf("view byte at %d is not zero", off)
		}
	}
	f.Close()
	// qemu-img reads the files; compare agrees image == source (view longer, zeros: identical).
	run(t, "qemu-img", "info", img)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", img, raw)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", v, raw)
	// A qcow2 overlay on the view reads back the image's bytes.
	ov := filepath.Join(t.TempDir(), "disk")
	run(t, "qemu-img", "create", "-f", "qcow2", "-b", v, "-F", "raw", ov)
	back := filepath.Join(t.TempDir(), "back.raw")
	run(t, "qemu-img", "convert", "-O", "raw", ov, back)
	got, _ := os.ReadFile(back)
	if int64(len(got)) != 1<<30 || !bytes.Equal(got[:size], src) || !chunkstore.IsZeroes(got[size:]) {
		t.Fatal("the qcow2 overlay on the view does not read back the image")
	}
	// readdir lists the image (its manifest is now local), not views.
	ents, err := os.ReadDir(e.mnt)
	if err != nil || len(ents) != 1 || ents[0].Name() != d.String() {
		t.Fatalf("readdir = %v, %v; want [%s]", ents, err, d)
	}
}

func TestWritesRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, _ := e.importImage(1<<20, 1, [2]int64{0, 1 << 20})
	p := e.path(d.String())
	os.Stat(p)
	checks := map[string]error{
		"open for writing": func() error { f, err := os.OpenFile(p, os.O_WRONLY, 0); f.Close(); return err }(),
		"open read-write":  func() error { f, err := os.OpenFile(p, os.O_RDWR, 0); f.Close(); return err }(),
		"create":           func() error { f, err := os.Create(e.path("new")); f.Close(); return err }(),
		"truncate":         os.Truncate(p, 10),
		"chown":            os.Chown(p, 1000, 1000),
		"chmod":            os.Chmod(p, 0o666),
		"mkdir":            os.Mkdir(e.path("dir"), 0o755),
		"remove":           os.Remove(p),
		"rename":           os.Rename(p, e.path("other")),
	}
	for what, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v; want EROFS", what, err)
		}
	}
	// Images carry no extended attributes (what libvirt's DAC driver takes as "cannot
	// remember labels here").
	if err := unix.Setxattr(p, "user.x", []byte("y"), 0); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("setxattr: %v; want ENOTSUP", err)
	}
}

func TestLazyFetchAndOneFetchPerChunk(t *testing.T) {
	e := newEnv(t, envOptions{})
	const cs = chunkstore.DefaultChunkSize
	d, raw := e.importImage(64*cs, 7, [2]int64{0, 64 * cs})
	src, _ := os.ReadFile(raw)
	fetches := func() int64 { return e.cache.Stats().Fetches() }

	// One chunk's worth at an offset spanning two chunks (10 and 11): exactly those two arrive.
	buf := alignedBuf(cs)
	off := int64(10*cs + cs/2)
	if _, err := readDirect(e.path(d.String()), buf, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, src[off:off+cs]) {
		t.Fatal("wrong bytes")
	}
	if got := fetches(); got != 2 {
		t.Fatalf("reading %d bytes across 2 chunks fetched %d chunks; want 2", cs, got)
	}
	if _, err := readDirect(e.path(d.String()), buf, off); err != nil {
		t.Fatal(err)
	}
	if got := fetches(); got != 2 {
		t.Fatalf("reading it again fetched more: %d", got)
	}
	e.cache.Flush()
	p, total, _ := cache.Presence(e.state, mustManifest(t, e, d))
	if p != 2 || total != 64 {
		t.Fatalf("local state holds %d/%d chunks; want 2/64", p, total)
	}

	// 16 concurrent readers of one cold chunk, each a different 1/16 of it: one fetch.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := alignedBuf(cs / 16)
			<-start
			o := int64(40*cs + i*cs/16)
			if _, err := readDirect(e.path(d.String()), b, o); err != nil || !bytes.Equal(b, src[o:o+cs/16]) {
				t.Errorf("reader %d: %v or wrong bytes", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := fetches(); got != 3 {
		t.Fatalf("16 concurrent readers of one cold chunk caused %d fetches; want 1", got-2)
	}
}

func mustManifest(t testing.TB, e *env, d chunkstore.Digest) *chunkstore.Manifest {
	m, err := e.state.GetManifest(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCorruptionRepaired, at the default chunk size and at 1 MiB (the previous default, whose
// chunks are verified by sub-block on small reads): a shared tier in front of the origin
// serves a corrupted chunk object, which is refused (counted against that tier) and fetched
// again from the origin; local chunk objects damaged anywhere are quarantined and repaired,
// whether the read covers the whole chunk or a few KiB of it; when no copy is good the read
// fails with EIO. Wrong bytes are never served.
func TestCorruptionRepaired(t *testing.T) {
	for _, cs := range []int64{chunkstore.DefaultChunkSize, 1 << 20} {
		t.Run(fmt.Sprintf("chunk-size=%d", cs), func(t *testing.T) { testCorruptionRepaired(t, cs) })
	}
}

// flipByte changes the byte at (or, with at < 0, that many bytes before the end of) an object
// file.
func flipByte(t testing.TB, p string, at int, x byte) {
	t.Helper()
	obj, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(obj)
	}
	obj[at] ^= x
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, obj, 0o444); err != nil {
		t.Fatal(err)
	}
}

func testCorruptionRepaired(t *testing.T, cs int64) {
	front, err := local.Open(filepath.Join(t.TempDir(), "front"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// No memory cache: every read below goes to the local chunk file and is verified.
	e := newEnv(t, envOptions{memoryBytes: 1, front: []*local.Store{front}})
	size := 16 * cs
	if cs < 1<<20 {
		size = 256 * cs
	}
	d, raw := e.importImageAt(cs, size, 3, [2]int64{0, size})
	src, _ := os.ReadFile(raw)
	img := e.path(d.String())
	ctx := context.Background()
	m, err := e.origin.GetManifest(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	// The shared tier has every chunk; chunk 7's object there is damaged in its payload.
	for _, c := range m.Chunks {
		ch, err := e.origin.GetChunk(ctx, c)
		if err == nil {
			_, err = front.PutChunk(ctx, ch)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	flipByte(t, front.ChunkPath(m.Chunks[7]), chunkstore.ObjectHeaderSize+int(cs/3), 0x40)
	// A cold read of everything: chunk 7 is refused from the tier and fetched from the origin.
	if fileSHA(t, img) != sha256.Sum256(src) {
		t.Fatal("wrong bytes")
	}
	st := e.cache.Stats()
	if tier, org := st.Origins[0], st.Origins[1]; tier.Corrupt != 1 || tier.Fetches != int64(len(m.Chunks)-1) || org.Fetches != 1 {
		t.Fatalf("tier %+v, origin %+v: want 1 corrupt chunk refused from the tier and fetched from the origin, the rest from the tier", tier, org)
	}
	e.cache.Flush()
	if rep, err := cache.Verify(ctx, e.state, nil, nil); err != nil || len(rep.Corrupt) != 0 || rep.Missing != 0 || rep.Checked != len(m.Chunks) {
		t.Fatalf("the local state after the refetch: %+v, %v; want every chunk, all good", rep, err)
	}

	buf := alignedBuf(int(cs))
	// A small read of a good local chunk is verified by sub-block: a pread and a BLAKE3 of
	// the sub-blocks it covers, not the whole object read and hashed again.
	sub := e.cache.Stats().SubBlockReads
	if _, err := readDirect(img, buf[:8192], 9*cs+4096); err != nil || !bytes.Equal(buf[:8192], src[9*cs+4096:9*cs+4096+8192]) {
		t.Fatalf("small read of a good chunk: %v or wrong bytes", err)
	}
	if e.cache.Stats().SubBlockReads != sub+1 {
		t.Fatal("a small read of a local chunk did not take the sub-block path")
	}

	r := rand.New(rand.NewPCG(1, 2))
	const flips = 100
	for i := range flips {
		ci := r.IntN(len(m.Chunks))
		p := e.state.ChunkPath(m.Chunks[ci])
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		at := r.IntN(int(fi.Size())) // anywhere, header included
		flipByte(t, p, at, byte(1+r.IntN(255)))
		// Odd flips: a small read (8 KiB around the flipped byte, verified by sub-block);
		// even flips: the whole chunk.
		off, rd := int64(ci)*cs, buf
		if at >= chunkstore.ObjectHeaderSize && i%2 == 1 {
			off += int64(at-chunkstore.ObjectHeaderSize) &^ 4095
			rd = buf[:8192]
			if off+8192 > int64(ci+1)*cs {
				off -= 4096
			}
		}
		if _, err := readDirect(img, rd, off); err != nil {
			t.Fatalf("flip %d (chunk %d byte %d): read failed: %v", i, ci, at, err)
		}
		if !bytes.Equal(rd, src[off:off+int64(len(rd))]) {
			t.Fatalf("flip %d (chunk %d byte %d): wrong bytes served", i, ci, at)
		}
		e.cache.Flush() // the repaired chunk is written in the background
	}
	st = e.cache.Stats()
	if st.LocalCorrupt != flips || st.Repairs != flips {
		t.Fatalf("%d flips: %d detected, %d repaired; want all", flips, st.LocalCorrupt, st.Repairs)
	}
	q, _ := os.ReadDir(e.cache.QuarantineDir())
	if len(q) != flips {
		t.Fatalf("quarantine holds %d chunks; want %d", len(q), flips)
	}

	// Now every copy is corrupt: EIO, never wrong bytes.
	ci := 5
	for _, s := range []*local.Store{e.state, front, e.origin} {
		flipByte(t, s.ChunkPath(m.Chunks[ci]), -1, 0xff)
	}
	before := e.cache.Stats().OriginCorrupt()
	if _, err := readDirect(img, buf, int64(ci)*cs); !errors.Is(err, syscall.EIO) {
		t.Fatalf("local and origins corrupt: read = %v; want EIO", err)
	}
	if got := e.cache.Stats().OriginCorrupt() - before; got != 2 {
		t.Fatalf("origin corruption counted %d times; want 2 (the tier and the origin)", got)
	}
	// And removed from the origins: still EIO.
	os.Remove(front.ChunkPath(m.Chunks[ci]))
	os.Remove(e.origin.ChunkPath(m.Chunks[ci]))
	if _, err := readDirect(img, buf, int64(ci)*cs); !errors.Is(err, syscall.EIO) {
		t.Fatalf("local corrupt, origins missing: read = %v; want EIO", err)
	}
	// Other chunks still read.
	if _, err := readDirect(img, buf, 6*cs); err != nil || !bytes.Equal(buf, src[6*cs:7*cs]) {
		t.Fatalf("a good chunk after a failed one: %v", err)
	}
}

// faulty is an origin that fails on demand (fault injection only; the real origin is behind it).
type faulty struct {
	chunkstore.Getter
	mode atomic.Value // "", "wrong", "error", "stall"
	hits atomic.Int64
}

func (f *faulty) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	f.hits.Add(1)
	switch f.mode.Load() {
	case "wrong":
		// Bytes that do not hash to d, passed through verification as any backend would.
		return chunkstore.VerifyChunk(d, []byte("not the chunk"))
	case "error":
		return nil, fmt.Errorf("origin down: %w", syscall.ECONNREFUSED)
	}
	return f.Getter.GetChunk(ctx, d)
}

func TestOriginFaults(t *testing.T) {
	var f *faulty
	e := newEnv(t, envOptions{wrap: func(g chunkstore.Getter) chunkstore.Getter { f = &faulty{Getter: g}; return f }})
	f.mode.Store("")
	d1, raw1 := e.importImage(8<<20, 11, [2]int64{0, 8 << 20})
	d2, raw2 := e.importImage(8<<20, 12, [2]int64{0, 8 << 20})
	src1, _ := os.ReadFile(raw1)
	src2, _ := os.ReadFile(raw2)
	os.Stat(e.path(d1.String()))
	os.Stat(e.path(d2.String()))
	// Image 1 is fully local; then the origin turns bad.
	if fileSHA(t, e.path(d1.String())) != sha256.Sum256(src1) {
		t.Fatal("wrong bytes")
	}
	e.cache.Flush()
	const cs = chunkstore.DefaultChunkSize
	buf := alignedBuf(cs) // one chunk
	for _, mode := range []string{"wrong", "error"} {
		f.mode.Store(mode)
		if _, err := readDirect(e.path(d2.String()), buf, 3*cs); !errors.Is(err, syscall.EIO) {
			t.Fatalf("origin %s: read = %v; want EIO", mode, err)
		}
		// The daemon keeps serving the other image.
		if _, err := readDirect(e.path(d1.String()), buf, 2*cs); err != nil || !bytes.Equal(buf, src1[2*cs:3*cs]) {
			t.Fatalf("origin %s: the local image stopped reading: %v", mode, err)
		}
	}
	st := e.cache.Stats()
	if st.OriginCorrupt() != 1 || st.Origins[0].Errors != 1 || st.LocalCorrupt != 0 {
		t.Fatalf("stats %+v: want 1 origin corruption, 1 origin error, no local corruption", st)
	}
	f.mode.Store("")
	if _, err := readDirect(e.path(d2.String()), buf, 3*cs); err != nil || !bytes.Equal(buf, src2[3*cs:4*cs]) {
		t.Fatalf("origin back: %v", err)
	}
}
