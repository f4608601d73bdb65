package cache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// benchChunks returns n distinct 64 KiB chunks that compress about 2:1 with zstd (half
// random, half a repeated pattern), as an OS image's chunks roughly do.
func benchChunks(n int) []*chunkstore.Chunk {
	var out []*chunkstore.Chunk
	for i := range n {
		b := storetest.Data(uint64(9000+i), chunkstore.MinChunkSize)
		for j := len(b) / 2; j < len(b); j++ {
			b[j] = byte(j % 61)
		}
		out = append(out, chunkstore.NewChunk(b))
	}
	return out
}

// BenchmarkPersistFetched makes fetched chunks durable in a real local state on disk (under
// t.TempDir, the same file system as the daemon's state in the benchmarks): each iteration
// admits 128 chunks as fast as a fetching reader could and waits until they are durable.
// "per-chunk" is the path before batches (PutChunk: an fsync of each object and its
// directory); the others batch. It reports chunks/s, barriers per chunk and how many chunks
// their reader had to write itself (the queue was full: a guest read waited on a barrier).
func BenchmarkPersistFetched(b *testing.B) {
	const n = 128
	chs := benchChunks(n)
	for _, tc := range []struct {
		name string
		pc   persistConfig
	}{
		{"per-chunk", persistConfig{workers: 4, queue: 32, batchChunks: 1, batchBytes: 0, newBatch: newLocalBatch}},
		{"batch32-w4", defaultPersist},
		{"batch32-w2", persistConfig{workers: 2, queue: 32, batchChunks: 32, batchBytes: 4 << 20, newBatch: newLocalBatch}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			state, err := local.Open(filepath.Join(b.TempDir(), "state"), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			c, err := newCache(Config{Local: state, MemoryBytes: 1}, tc.pc)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			syncs0, inline0 := state.Syncs(), c.inline.Load()
			var elapsed time.Duration
			for range b.N {
				start := time.Now()
				for _, ch := range chs {
					c.Admit(ch, nil)
				}
				c.Flush()
				elapsed += time.Since(start)
				b.StopTimer()
				for _, ch := range chs {
					state.DeleteChunk(ctx, ch.Digest())
					c.dropChunk(ch.Digest())
				}
				unix.Sync()
				b.StartTimer()
			}
			total := float64(n * b.N)
			b.ReportMetric(total/elapsed.Seconds(), "chunks/s")
			b.ReportMetric(float64(state.Syncs()-syncs0)/total, "syncs/chunk")
			b.ReportMetric(float64(c.inline.Load()-inline0)/total, "inline/chunk")
		})
	}
	// What storing the origin's encoding instead of compressing again would save, per chunk.
	b.Run("encode-only", func(b *testing.B) {
		var nb int
		for i := range b.N {
			hdr, p := chunkstore.EncodeObject(chs[i%n].Data())
			nb += len(hdr) + len(p)
		}
		b.ReportMetric(float64(nb)/float64(b.N), "stored-bytes/chunk")
	})
}
