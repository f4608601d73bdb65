package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// qemu's log trace with -msg timestamp=on: reads and their times, relative to the first.
func TestReadTimedTrace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "blk.trace")
	os.WriteFile(p, []byte(`4242@1733500000.100000:blk_co_preadv blk 0x5 bs 0x6 offset 0 bytes 512 flags 0x0
4242@1733500000.100500:blk_root_attach child 0x1
4242@1733500000.350000:blk_co_preadv blk 0x5 bs 0x6 offset 1048576 bytes 4096 flags 0x0
4243@1733500001.100000:blk_co_preadv blk 0x5 bs 0x6 offset 8192 bytes 65536 flags 0x0
`), 0o644)
	got, err := readTimedTrace(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []timedRead{{0, 0, 512}, {250 * time.Millisecond, 1 << 20, 4096}, {time.Second, 8192, 65536}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if d := got[i].At - want[i].At; d > time.Millisecond || d < -time.Millisecond || got[i].Off != want[i].Off || got[i].Len != want[i].Len {
			t.Errorf("read %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Without -msg timestamp=on there are no times: a clear error, not a storm at time 0.
	os.WriteFile(p, []byte("blk_co_preadv blk 0x5 bs 0x6 offset 0 bytes 512 flags 0x0\n"), 0o644)
	if _, err := readTimedTrace(p); err == nil {
		t.Error("a trace without times was accepted")
	}
	// Replay keeps the times: the last read is issued no sooner than 1 s after the start.
	img := filepath.Join(dir, "img")
	os.WriteFile(img, make([]byte, 2<<20), 0o644)
	rp, err := replay(context.Background(), img, want)
	if err != nil || rp.Failed != 0 || rp.Took < time.Second || rp.InReads > rp.Took/2 {
		t.Errorf("replay: %+v, %v; want ≥ 1 s, none failed, little of it in reads", rp, err)
	}
}
