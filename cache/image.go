package cache

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore"
)

// Image is an image known to the cache: its manifest and reads of its bytes.
type Image struct {
	c      *Cache
	digest chunkstore.Digest
	m      *chunkstore.Manifest

	use   imageUse                        // its last use in this process (lastuse.go)
	opens atomic.Int32                    // open file handles (an open image is in use)
	rec   atomic.Pointer[profileRecorder] // set while a boot profile is being recorded

	src ChunkSource // set for an image read through a ChunkSource (then m has no chunks)

	stored, storedNext atomic.Int64 // StoredBytes's last count, and when (unix ns) to count again
	counting           atomic.Bool  // StoredBytes is counting

	streams streams // sequential streams reading it, each read one read ahead (stream.go)
}

// storedTTL bounds how stale StoredBytes may be. Counting stats every chunk's object (a
// 16 GiB image has 262144), so it is also never counted again sooner than storedSpacing
// times what the last count took, and by one caller at a time: stat(2) of a large image,
// which every open and every image cache manager pass does, stays a small cost.
const (
	storedTTL     = time.Second
	storedSpacing = 100
)

// StoredBytes returns the bytes the image's chunks take in the local state (st_blocks of its
// file), counted at most once a second (less often for large images); while one caller
// counts, the others get the last count.
func (im *Image) StoredBytes() int64 {
	now := time.Now().UnixNano()
	next := im.storedNext.Load()
	if now < next || (next != 0 && !im.counting.CompareAndSwap(false, true)) {
		return im.stored.Load()
	}
	if next != 0 {
		defer im.counting.Store(false)
	}
	_, _, n := im.Presence()
	done := time.Now().UnixNano()
	im.stored.Store(n)
	im.storedNext.Store(done + max(int64(storedTTL), storedSpacing*(done-now)))
	return n
}

// Acquire counts an open file handle on the image: an open image is in use and is never
// removed by cleanup. Release undoes it.
func (im *Image) Acquire() {
	im.opens.Add(1)
	im.c.noteUse(im)
}

// Release undoes Acquire.
func (im *Image) Release() {
	im.opens.Add(-1)
	im.c.releases.broadcast()
}

// Open reports whether a file handle on the image is open.
func (im *Image) Open() bool { return im.opens.Load() > 0 }

// Digest returns the image's digest (its name).
func (im *Image) Digest() chunkstore.Digest { return im.digest }

// Size returns the image's size in bytes.
func (im *Image) Size() int64 { return im.m.Size }

// Manifest returns the image's manifest; callers must not modify it.
func (im *Image) Manifest() *chunkstore.Manifest { return im.m }

// ReadAt fills p with the image's bytes at off; past the end it reads short with no error
// (n < len(p)). Hole chunks read as zeros without I/O; every other byte comes from a chunk
// verified since it was last read from disk or network. The chunks a read spans are read
// at the same time (up to readParallel), so a cold read spanning several waits for one
// round trip to the origin, not one per chunk. An error names the first chunk that failed
// and why; n counts the bytes before it.
func (im *Image) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, _, err := im.readAt(ctx, p, off, true)
	return n, err
}

// readAt is ReadAt, and says how many of the bytes read were holes; a read that is not the
// guest's (guest false: one read ahead, stream.go) is not counted, does not mark the image
// used and is not recorded in a boot profile (served and servedBytes, when its bytes are
// served, do that).
func (im *Image) readAt(ctx context.Context, p []byte, off int64, guest bool) (int, int64, error) {
	if off < 0 {
		return 0, 0, fmt.Errorf("image %s: negative offset %d", im.digest.Short(), off)
	}
	m := im.m
	if off >= m.Size {
		return 0, 0, nil
	}
	p = p[:min(int64(len(p)), m.Size-off)]
	st := im.c.stats
	if guest {
		im.served(off, len(p))
	}
	if im.src != nil {
		n, err := im.readSource(ctx, p, off)
		return n, 0, err
	}
	var pieces []piece
	var holes int64
	for n := 0; n < len(p); {
		pos := off + int64(n)
		i := int(pos / m.ChunkSize)
		within := pos - int64(i)*m.ChunkSize
		want := int(min(int64(len(p)-n), m.ChunkLen(i)-within))
		if d := m.Chunks[i]; d.IsZero() {
			clear(p[n : n+want])
			holes += int64(want)
		} else {
			pieces = append(pieces, piece{i: i, at: n, within: within, dst: p[n : n+want]})
		}
		n += want
	}
	read := func(pc *piece) {
		pc.err = im.c.readChunkAt(ctx, m.Chunks[pc.i], m.ChunkLen(pc.i), pc.within, pc.dst)
	}
	if workers := min(len(pieces), readParallel); workers <= 1 {
		for k := range pieces {
			read(&pieces[k])
		}
	} else {
		// A few workers take the pieces in order; this goroutine is one of them.
		var next atomic.Int64
		work := func() {
			for k := next.Add(1) - 1; k < int64(len(pieces)); k = next.Add(1) - 1 {
				read(&pieces[k])
			}
		}
		var wg sync.WaitGroup
		for range workers - 1 {
			wg.Go(work)
		}
		work()
		wg.Wait()
	}
	for _, pc := range pieces {
		if pc.err != nil {
			if guest {
				st.readErrors.Add(1)
			}
			return pc.at, 0, fmt.Errorf("image %s, chunk %d at offset %d: %w", im.digest.Short(), pc.i, int64(pc.i)*m.ChunkSize, pc.err)
		}
	}
	if guest {
		im.servedBytes(len(p), holes)
	}
	return len(p), holes, nil
}

// served counts a read of n bytes at off as the guest's: the image was used, and a boot
// profile being recorded records its chunks.
func (im *Image) served(off int64, n int) {
	im.c.stats.reads.Add(1)
	im.noteUse()
	if rec := im.rec.Load(); rec != nil && im.src == nil {
		m := im.m
		for i := int(off / m.ChunkSize); i < len(m.Chunks) && int64(i)*m.ChunkSize < off+int64(n); i++ {
			if !m.Chunks[i].IsZero() {
				rec.record(i)
			}
		}
	}
}

// servedBytes counts the n bytes of a read served, holes of them holes.
func (im *Image) servedBytes(n int, holes int64) {
	im.c.stats.holeBytes.Add(holes)
	im.c.stats.bytesRead.Add(int64(n))
}

// readParallel bounds the chunks one read fetches at the same time. Warm chunks are CPU
// work (pread, hash), so more workers than cores only add scheduling; cold ones wait on
// the network, where 8 in flight keep a link busy.
var readParallel = max(8, runtime.GOMAXPROCS(0))

// piece is the part of a read that falls in one data chunk.
type piece struct {
	i      int    // chunk index
	at     int    // offset in the read
	within int64  // offset in the chunk
	dst    []byte // where its bytes go
	err    error
}

// readSource reads through the image's ChunkSource, chunk after chunk: the source fetches
// the chunks the read spans with the first one, in one request.
func (im *Image) readSource(ctx context.Context, p []byte, off int64) (int, error) {
	m, st := im.m, im.c.stats
	end := off + int64(len(p))
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := int(pos / m.ChunkSize)
		within := pos - int64(i)*m.ChunkSize
		want := int(min(int64(len(p)-n), m.ChunkLen(i)-within))
		span := int((end-1-int64(i)*m.ChunkSize)/m.ChunkSize) + 1
		data, err := im.src.Chunk(ctx, i, span)
		if err != nil {
			st.readErrors.Add(1)
			return n, fmt.Errorf("image %s, chunk %d at offset %d: %w", im.digest.Short(), i, int64(i)*m.ChunkSize, err)
		}
		if data == nil {
			clear(p[n : n+want])
			st.holeBytes.Add(int64(want))
		} else {
			copy(p[n:n+want], data[within:])
		}
		n += want
	}
	st.bytesRead.Add(int64(n))
	return n, nil
}

// Presence counts the image's chunks: total non-hole chunks, how many are in the local
// state, and the bytes their objects take on disk.
func (im *Image) Presence() (present, total int, storedBytes int64) {
	if im.src != nil {
		known, unknown := im.src.Known()
		for _, d := range known {
			if n, err := im.c.local.ChunkStoredSize(d); err == nil {
				present++
				storedBytes += n
			}
		}
		return present, len(known) + unknown, storedBytes
	}
	return Presence(im.c.local, im.m)
}
