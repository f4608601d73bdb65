package fs

import (
	"bytes"
	"os"
	"testing"
)

// A sequential O_DIRECT reader (qemu with cache='none') through the mount is read ahead
// and gets the right bytes, and reads out of order are not read ahead.
func TestSequentialReadsAhead(t *testing.T) {
	e := newEnv(t, envOptions{memoryBytes: 64 << 20})
	const cs, size = 64 << 10, 16 << 20
	d, raw := e.importImageAt(cs, size, 11, [2]int64{0, size})
	src, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	img := e.path(d.String())
	buf := alignedBuf(1 << 20)
	readAll := func() {
		for off := int64(0); off < size; off += 1 << 20 {
			if _, err := readDirect(img, buf, off); err != nil || !bytes.Equal(buf, src[off:off+1<<20]) {
				t.Fatalf("read at %d: %v or wrong bytes", off, err)
			}
		}
	}
	readAll() // fetches every chunk; a read ahead never fetches
	if got := e.cache.Stats().ReadAheads; got != 0 {
		t.Fatalf("%d cold reads were read ahead", got)
	}
	e.cache.Flush()
	readAll() // the chunks are local now (verified whole once: their sub-block digests known)
	readAll()
	st := e.cache.Stats()
	if st.ReadAheads < 14 {
		t.Fatalf("%d reads read ahead over a warm sequential pass of 16; want at least 14", st.ReadAheads)
	}
	if st.LocalCorrupt != 0 || st.ReadErrors != 0 {
		t.Fatalf("%d corrupt, %d read errors", st.LocalCorrupt, st.ReadErrors)
	}
	before := st.ReadAheads
	for _, k := range []int64{9, 2, 14, 5, 11, 0, 7} {
		if _, err := readDirect(img, buf, k<<20); err != nil || !bytes.Equal(buf, src[k<<20:(k+1)<<20]) {
			t.Fatalf("read at %d MiB: %v or wrong bytes", k, err)
		}
	}
	if got := e.cache.Stats().ReadAheads - before; got != 0 {
		t.Fatalf("reads out of order caused %d reads ahead", got)
	}
}
