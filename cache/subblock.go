package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"lukechampine.com/blake3/guts"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// SubBlockSize is the unit small reads are verified in. When a raw-stored local chunk is
// verified whole (SHA-256 against its name), the digest of each of its 16 KiB sub-blocks is
// kept in memory; a later read of part of the chunk reads only the sub-blocks it covers from
// disk and checks them against those digests — derived from verified bytes, so the chain of
// trust holds — instead of re-reading and re-hashing the whole chunk. Sub-block digests never
// leave memory, so they use BLAKE3, which is cryptographic too and ~2× faster than SHA-256 here.
// The size, measured (BLAKE3, AVX2, on this host): 4 KiB hashes in 2.5 µs (1.6 GB/s: too
// small for its SIMD lanes), 16 KiB in 5.0 µs (3.3 GB/s), 64 KiB in 18 µs (3.6 GB/s). At
// 16 KiB a 4 KiB guest read hashes 16 KiB, not a whole 64 KiB chunk; the digests cost 2 MiB
// of memory per GiB of chunks (bounded by SubBlockBytes). And 16 KiB is exactly the 16 BLAKE3
// chunks one AVX-512 pass compresses side by side: 3.3 µs (5.0 GB/s), see subDigest.
const SubBlockSize = 16 << 10

// subDigest is the BLAKE3 digest of one sub-block (at most SubBlockSize bytes), hashed as
// one tree of up to 16 BLAKE3 chunks compressed in parallel (AVX-512 where the CPU has it,
// else AVX2): the library's own Sum256 hands each subtree to a goroutine, which costs more
// than the hashing at this size.
func subDigest(b []byte) chunkstore.Digest {
	var buf *[SubBlockSize]byte
	if len(b) == SubBlockSize {
		buf = (*[SubBlockSize]byte)(b)
	} else {
		buf = new([SubBlockSize]byte) // a chunk's short last sub-block
		copy(buf[:], b)
	}
	n := guts.CompressBuffer(buf, len(b), &guts.IV, 0, 0)
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	return chunkstore.Digest(out[:chunkstore.DigestSize])
}

// subBlockDigests hashes data in SubBlockSize pieces.
func subBlockDigests(data []byte) []chunkstore.Digest {
	n := (len(data) + SubBlockSize - 1) / SubBlockSize
	out := make([]chunkstore.Digest, n)
	for i := range out {
		out[i] = subDigest(data[i*SubBlockSize : min((i+1)*SubBlockSize, len(data))])
	}
	return out
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// errSubBlock says a sub-block read from disk does not match its digest.
var errSubBlock = errors.New("sub-block does not match the digest derived when the chunk was verified")

// parallelSubBlocks is the most sub-blocks readRange hashes on the calling goroutine.
const parallelSubBlocks = 8

// readRange fills dst with chunk d's bytes at [within, within+len(dst)) using its sub-block
// digests: only the covered sub-blocks are read and hashed (in parallel when there are several).
// It returns local.ErrNotRaw if the chunk is stored compressed, a *CorruptError on mismatch.
func (c *Cache) readRange(d chunkstore.Digest, subs []chunkstore.Digest, chunkLen, within int64, dst []byte) error {
	first := within / SubBlockSize
	last := (within + int64(len(dst)) - 1) / SubBlockSize
	start := first * SubBlockSize
	end := min((last+1)*SubBlockSize, chunkLen)
	var buf []byte
	var bp *[]byte
	if start == within && end == within+int64(len(dst)) {
		buf = dst // aligned: read in place
	} else {
		bp = bufPool.Get().(*[]byte)
		if int64(cap(*bp)) < end-start {
			*bp = make([]byte, end-start)
		}
		buf = (*bp)[:end-start]
		defer bufPool.Put(bp)
	}
	fe, err := c.fds.get(d, func() (int, int64, error) { return c.local.OpenRaw(d) })
	if err != nil {
		return err
	}
	if fe.n != chunkLen {
		c.fds.put(fe)
		return &chunkstore.CorruptError{Digest: d, Where: c.local.ChunkPath(d), Err: fmt.Errorf("object says %d bytes, the manifest %d", fe.n, chunkLen)}
	}
	err = local.PreadFull(fe.fd, buf, chunkstore.ObjectHeaderSize+start)
	c.fds.put(fe)
	if err != nil {
		// A short object file is a damaged one.
		return &chunkstore.CorruptError{Digest: d, Where: c.local.ChunkPath(d), Err: err}
	}
	n := int(last - first + 1)
	bad := make([]bool, n)
	check := func(i int) {
		o := int64(i) * SubBlockSize
		if subDigest(buf[o:min(o+SubBlockSize, int64(len(buf)))]) != subs[int(first)+i] {
			bad[i] = true
		}
	}
	// A few sub-blocks (a 64 KiB chunk has four) are hashed here: Image.ReadAt already reads
	// the chunks of a large read in parallel. Many (a large chunk read whole) use every core.
	if workers := min(n, runtime.GOMAXPROCS(0)); n > parallelSubBlocks && workers > 1 {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					check(i)
				}
			})
		}
		wg.Wait()
	} else {
		for i := range n {
			check(i)
		}
	}
	for i, b := range bad {
		if b {
			return &chunkstore.CorruptError{Digest: d, Where: c.local.ChunkPath(d), Err: fmt.Errorf("%w (sub-block %d)", errSubBlock, int(first)+i)}
		}
	}
	if bp != nil {
		copy(dst, buf[within-start:])
	}
	return nil
}

// readChunkAt fills dst with chunk d's bytes at within: from the verified memory cache, else
// by sub-blocks when their digests are known, else by loading and verifying the whole chunk.
func (c *Cache) readChunkAt(ctx context.Context, d chunkstore.Digest, chunkLen, within int64, dst []byte) error {
	c.reads.touch(d)
	if ch, ok := c.mem.get(d); ok {
		c.stats.memHits.Add(1)
		return copyChunk(dst, ch, chunkLen, within)
	}
	if subs, ok := c.subs.get(d); ok && !c.noVerify.Load() {
		err := c.readRange(d, subs, chunkLen, within, dst)
		switch {
		case err == nil:
			c.stats.subBlockReads.Add(1)
			return nil
		case chunkstore.IsCorrupt(err):
			ch, err := c.repair(ctx, d, err)
			if err != nil {
				return err
			}
			return copyChunk(dst, ch, chunkLen, within)
		default:
			// Not raw, gone (evicted), or unreadable: forget the digests, take the whole chunk.
			c.subs.remove(d)
		}
	}
	ch, err := c.Chunk(ctx, d)
	if err != nil {
		return err
	}
	return copyChunk(dst, ch, chunkLen, within)
}

func copyChunk(dst []byte, ch *chunkstore.Chunk, chunkLen, within int64) error {
	data := ch.Data()
	if int64(len(data)) != chunkLen {
		// A chunk's digest names its length too; only two manifests disagreeing about one
		// chunk could cause this, which content addressing rules out.
		return fmt.Errorf("chunk %s: %d bytes, manifest wants %d", ch.Digest().Short(), len(data), chunkLen)
	}
	copy(dst, data[within:])
	return nil
}
