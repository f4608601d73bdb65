package bench

import (
	"os"
	"path/filepath"
	"testing"
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
