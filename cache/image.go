package cache

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore"
)

// Image is an image known to the cache: its manifest and reads of its bytes.
type Image struct {
	c      *Cache
	digest chunkstore.Digest
	m      *chunkstore.Manifest

	lastUse atomic.Int64                    // unix nanoseconds of the last read
	opens   atomic.Int32                    // open file handles (an open image is in use)
	rec     atomic.Pointer[profileRecorder] // set while a boot profile is being recorded

	src ChunkSource // set for an image read through a ChunkSource (then m has no chunks)

	stored, storedAt atomic.Int64 // StoredBytes's last count, and when (unix ns)
}

// storedTTL bounds how stale StoredBytes may be: counting stats every chunk's object.
const storedTTL = time.Second

// StoredBytes returns the bytes the image's chunks take in the local state (st_blocks of its
// file), counted at most once a second.
func (im *Image) StoredBytes() int64 {
	now := time.Now().UnixNano()
	if at := im.storedAt.Load(); at != 0 && now-at < int64(storedTTL) {
		return im.stored.Load()
	}
	_, _, n := im.Presence()
	im.stored.Store(n)
	im.storedAt.Store(now)
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
// verified since it was last read from disk or network. An error names the chunk and why.
func (im *Image) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("image %s: negative offset %d", im.digest.Short(), off)
	}
	m := im.m
	if off >= m.Size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), m.Size-off)]
	st := im.c.stats
	st.reads.Add(1)
	im.lastUse.Store(time.Now().UnixNano())
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := int(pos / m.ChunkSize)
		within := pos - int64(i)*m.ChunkSize
		want := min(int64(len(p)-n), m.ChunkLen(i)-within)
		dst := p[n : n+int(want)]
		hole, err := im.readChunk(ctx, i, within, dst, off+int64(len(p)))
		if err != nil {
			st.readErrors.Add(1)
			return n, fmt.Errorf("image %s, chunk %d at offset %d: %w", im.digest.Short(), i, int64(i)*m.ChunkSize, err)
		}
		if hole {
			clear(dst)
			st.holeBytes.Add(want)
		}
		n += int(want)
	}
	st.bytesRead.Add(int64(n))
	return n, nil
}

// readChunk fills dst with chunk i's bytes from within, verified; hole says the chunk is all
// zeros (dst untouched). A read through a ChunkSource asks for the chunks up to end with it.
func (im *Image) readChunk(ctx context.Context, i int, within int64, dst []byte, end int64) (hole bool, err error) {
	m := im.m
	if im.src != nil {
		span := int((end-1-int64(i)*m.ChunkSize)/m.ChunkSize) + 1
		data, err := im.src.Chunk(ctx, i, span)
		if err != nil || data == nil {
			return data == nil && err == nil, err
		}
		copy(dst, data[within:])
		return false, nil
	}
	d := m.Chunks[i]
	if d.IsZero() {
		return true, nil
	}
	if rec := im.rec.Load(); rec != nil {
		rec.record(i)
	}
	return false, im.c.readChunkAt(ctx, d, m.ChunkLen(i), within, dst)
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
