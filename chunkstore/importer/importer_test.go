package importer

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func newStore(t testing.TB) *local.Store {
	s, err := local.Open(filepath.Join(t.TempDir(), "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeImage writes a raw image of size bytes: data in the given extents (offset, length),
// holes elsewhere.
func writeImage(t testing.TB, path string, size int64, extents ...[2]int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, e := range extents {
		if _, err := f.WriteAt(storetest.Data(uint64(i+1), int(e[1])), e[0]); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// storeBytes sums the sizes of the files in the store's chunks and manifests.
// storeBytes counts the store's files but its reference lock (empty, kept for ever).
func storeBytes(t testing.TB, s *local.Store) (n int64, files int) {
	filepath.Walk(s.Root(), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && p != filepath.Join(s.Root(), "refs.lock") {
			n += fi.Size()
			files++
		}
		return nil
	})
	return n, files
}

func sha(t testing.TB, path string) [32]byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func TestRawAndQcow2SameDigest(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	raw := filepath.Join(dir, "img.raw")
	// Unaligned size, data across chunk boundaries, a hole in between, an explicit zero chunk.
	writeImage(t, raw, 5<<20+12345, [2]int64{100, 1 << 20}, [2]int64{3<<20 + 7, 2<<20 + 12345 - 7})
	qcow := filepath.Join(dir, "img.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)

	s := newStore(t)
	// 1 MiB chunks: the layout above is drawn at that size (the default is smaller).
	r1, err := Import(ctx, s, raw, Options{ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Import(ctx, s, qcow, Options{ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Digest != r2.Digest {
		t.Fatalf("raw import %s, qcow2 import %s: want the same digest", r1.Digest, r2.Digest)
	}
	if r2.ChunksStored != 0 || r2.ManifestAdded {
		t.Fatalf("second import of the same content stored %d chunks, manifest added %v", r2.ChunksStored, r2.ManifestAdded)
	}
	if r1.Holes != 1 || r1.Chunks != 6 {
		t.Fatalf("import: %d chunks, %d holes; want 6 and 1", r1.Chunks, r1.Holes)
	}
	// The stored chunks reassemble to the source exactly.
	m, err := s.GetManifest(ctx, r1.Digest)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for i, d := range m.Chunks {
		if d.IsZero() {
			h.Write(make([]byte, m.ChunkLen(i)))
			continue
		}
		c, err := s.GetChunk(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(c.Data())
	}
	// qemu rounds a raw file up to whole sectors; so does the image.
	f, _ := os.OpenFile(raw, os.O_WRONLY, 0)
	f.Truncate(m.Size)
	f.Close()
	var got [32]byte
	h.Sum(got[:0])
	if got != sha(t, raw) {
		t.Fatal("chunks do not reassemble to the source image")
	}
	// Conversion leaves no temporary file.
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Fatalf("import left %d files in tmp/", len(ents))
	}
}

func TestSparseGiBStoresLittle(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ctx := context.Background()
	raw := filepath.Join(t.TempDir(), "sparse.raw")
	// 1 GiB, 10 % data (incompressible) in 8 extents, the rest zeros: half as holes, half
	// written out as real zero bytes.
	var ext [][2]int64
	for i := range int64(8) {
		ext = append(ext, [2]int64{i * 128 << 20, 128 << 20 / 10})
	}
	writeImage(t, raw, 1<<30, ext...)
	f, _ := os.OpenFile(raw, os.O_WRONLY, 0)
	f.WriteAt(make([]byte, 64<<20), 512<<20+64<<20) // explicit zeros
	f.Close()
	s := newStore(t)
	r, err := Import(ctx, s, raw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := storeBytes(t, s)
	if n > 110<<20 {
		t.Fatalf("a 1 GiB image with 10 %% data stored %d MiB; want ≤ 110 MiB", n>>20)
	}
	r2, err := Import(ctx, s, raw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := storeBytes(t, s)
	if r2.Digest != r.Digest || r2.ChunksStored != 0 || n2 != n {
		t.Fatalf("re-import: digest %s vs %s, %d chunks stored, store grew %d bytes", r2.Digest.Short(), r.Digest.Short(), r2.ChunksStored, n2-n)
	}
	t.Logf("1 GiB, 10%% data: %d chunks, %d holes, %.1f MiB stored", r.Chunks, r.Holes, float64(n)/(1<<20))
}

func TestBadInputChangesNothing(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.raw")
	os.WriteFile(empty, nil, 0o644)
	unreadable := filepath.Join(dir, "unreadable.raw")
	os.WriteFile(unreadable, []byte("data"), 0o000)
	badQcow := filepath.Join(dir, "bad.qcow2")
	// A qcow2 header that claims an absurd layout: qemu-img refuses it.
	os.WriteFile(badQcow, append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 504)...), 0o644)
	good := filepath.Join(dir, "good.raw")
	writeImage(t, good, 1<<20, [2]int64{0, 1 << 20})

	cases := []struct {
		name, path string
		opts       Options
		want       string
	}{
		{"missing file", filepath.Join(dir, "nope"), Options{}, "no such file"},
		{"directory", dir, Options{}, "not a regular file"},
		{"zero size", empty, Options{}, "empty"},
		{"unknown format", badQcow, Options{}, "qemu-img"},
		{"chunk size not a power of two", good, Options{ChunkSize: 3 << 20}, "power of two"},
		{"chunk size too small", good, Options{ChunkSize: 4096}, "power of two"},
	}
	if os.Geteuid() != 0 { // root reads anything
		cases = append(cases, struct {
			name, path string
			opts       Options
			want       string
		}{"unreadable", unreadable, Options{}, "permission denied"})
	}
	for _, c := range cases {
		s := newStore(t)
		_, err := Import(ctx, s, c.path, c.opts)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%s: err = %v; want it to mention %q", c.name, err, c.want)
		}
		if _, files := storeBytes(t, s); files != 0 {
			t.Errorf("%s: the failed import left %d files in the store", c.name, files)
		}
	}
	// Cancelled half-way: nothing stored.
	big := filepath.Join(dir, "big.raw")
	writeImage(t, big, 64<<20, [2]int64{0, 64 << 20})
	s := newStore(t)
	cctx, cancel := context.WithCancel(ctx)
	_, err := Import(cctx, s, big, Options{ChunkSize: 64 << 10, Workers: 1, Progress: func(done, total int64) {
		if done > total/2 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("cancelled import succeeded")
	}
	if _, files := storeBytes(t, s); files != 0 {
		t.Errorf("the cancelled import left %d files in the store", files)
	}
}

func TestUnwritableState(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	if _, err := local.Open(filepath.Join(dir, "f", "state"), local.Options{}); err == nil {
		t.Fatal("a state dir under a regular file was accepted")
	}
}

// BenchmarkImport imports a page-cached, data-dense (incompressible) 1 GiB raw image into an
// empty store each iteration (b.SetBytes: MB/s is import throughput). BASEFS_BENCH_SIZE
// overrides the size in MiB.
func BenchmarkImport(b *testing.B) {
	testenv.NeedBinary(b, "qemu-img")
	size := int64(1 << 30)
	raw := filepath.Join(b.TempDir(), "dense.raw")
	writeImage(b, raw, size, [2]int64{0, size})
	sha(b, raw) // into the page cache
	for _, cs := range []int64{256 << 10, 1 << 20, 4 << 20} {
		b.Run(humanSize(cs), func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				s := newStore(b)
				b.StartTimer()
				if _, err := Import(context.Background(), s, raw, Options{ChunkSize: cs}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(s.Root())
				b.StartTimer()
			}
		})
		b.Run(humanSize(cs)+"/reimport", func(b *testing.B) {
			s := newStore(b)
			Import(context.Background(), s, raw, Options{ChunkSize: cs})
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				if _, err := Import(context.Background(), s, raw, Options{ChunkSize: cs}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func humanSize(n int64) string {
	if n >= 1<<20 {
		return fmtInt(n>>20) + "MiB"
	}
	return fmtInt(n>>10) + "KiB"
}

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }
