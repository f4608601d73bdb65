package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestWritersAndCollectorsShareChunks: adoptions of images that share all but one chunk run
// against nova's unlink of the others and cleanup (minimum age 0: every unused image goes),
// for a few seconds; at every pause each image the state lists has all its chunks. A
// collector that computes references while an adoption has found a chunk present but not yet
// written its manifest deletes that chunk under the new image, which nothing could give again.
func TestWritersAndCollectorsShareChunks(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	st, err := local.Open(filepath.Join(dir, "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Local: st, MemoryBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := NewManager(c, ManagerConfig{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	const cs, chunks, variants = chunkstore.DefaultChunkSize, 64, 4
	scratch, err := local.Open(filepath.Join(dir, "scratch"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := storetest.Data(2402, cs*chunks)
	var paths, names [variants]string
	for i := range variants {
		b := append([]byte(nil), base...)
		b[i*cs] ^= 0xff
		paths[i] = filepath.Join(dir, fmt.Sprint("v", i, ".raw"))
		if err := os.WriteFile(paths[i], b, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := importer.Import(ctx, scratch, paths[i], importer.Options{Format: "raw"})
		if err != nil {
			t.Fatal(err)
		}
		names[i] = res.Digest.String()
	}
	var adopted, removed, collected atomic.Int64
	start := time.Now()
	for round := 0; time.Since(start) < 4*time.Second; round++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		loop := func(f func(n int)) {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					f(n)
				}
			})
		}
		for w := range 2 {
			loop(func(n int) {
				i := (n + w + round) % variants
				if _, err := m.Adopt(ctx, paths[i], names[i]); err == nil {
					adopted.Add(1)
				}
			})
		}
		loop(func(n int) {
			d, _ := chunkstore.ParseDigest(names[(n+round)%variants])
			if m.Remove(ctx, d, d.String()) == nil {
				removed.Add(1)
			}
		})
		loop(func(int) {
			if _, err := m.GC(ctx, false); err == nil {
				collected.Add(1)
			}
		})
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		err := st.WalkManifests(ctx, func(d chunkstore.Digest) error {
			man, err := st.GetManifest(ctx, d)
			if err != nil {
				return err
			}
			for i, ch := range man.Chunks {
				if ok, err := st.HasChunk(ctx, ch); err != nil || !ok {
					return fmt.Errorf("image %s lacks its chunk %d (%s): %v", d.Short(), i, ch.Short(), err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d (%d adoptions, %d unlinks, %d cleanups so far): %v", round, adopted.Load(), removed.Load(), collected.Load(), err)
		}
	}
	t.Logf("%v: %d adoptions, %d unlinks, %d cleanups; every listed image whole at every pause", time.Since(start).Round(time.Second), adopted.Load(), removed.Load(), collected.Load())
}
