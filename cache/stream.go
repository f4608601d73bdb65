package cache

import (
	"context"
	"errors"
	"sync"
)

// Sequential streams are read one read ahead. qemu reading its disk in order with
// cache='none' (O_DIRECT: no readahead in the kernel) waits for each read before it sends
// the next, so the daemon's cores hash one read's chunks and then sit idle while the reply
// crosses FUSE and the next request comes back. From the second read in a row of a stream,
// ReadStream starts reading (and verifying, exactly as ReadAt does) the same number of bytes
// after it into a buffer of its own; when the stream's next read asks for exactly those bytes
// it gets that buffer, and the read after it is started. Only warm ranges are read ahead
// (every chunk in memory or local with its sub-block digests): a read ahead never fetches,
// so it changes nothing on the cold path (the boot profile and fill decide what is fetched).
// Bytes read ahead are verified bytes held in memory, so reading ahead is part of the memory
// cache: off when Config.MemoryBytes is below aheadDepth reads of maxAheadRead.
const (
	streamSlots  = 8       // streams of one image told apart
	aheadDepth   = 2       // reads ahead of each stream: one hashed while the other is served
	maxAheadRead = 1 << 20 // largest read that is read ahead (FUSE's max_read)
)

var aheadPool = sync.Pool{New: func() any { b := make([]byte, maxAheadRead); return &b }}

// streams follows the sequential streams reading one image.
type streams struct {
	mu    sync.Mutex
	slots [streamSlots]stream
	next  int
}

type stream struct {
	end   int64        // where its last read ended
	run   int          // reads in a row
	ahead []*aheadRead // the reads of the bytes after end, in order
}

// aheadRead is a read ahead of a stream: done is closed when buf holds its bytes or err why not.
type aheadRead struct {
	off   int64
	n     int
	buf   *[]byte // from aheadPool
	holes int64   // bytes of it that are holes
	err   error
	done  chan struct{}
}

// ReadStream reads len(p) bytes at off for a caller that passes them on and then calls
// release: they are in p, or — for a stream's read that was read ahead — in a buffer of the
// cache's, returned instead. b is never shorter than ReadAt's n would be; release must be
// called once, when b is no longer used.
func (im *Image) ReadStream(ctx context.Context, p []byte, off int64) (b []byte, release func(), err error) {
	if im.src != nil || im.c.mem.max < aheadDepth*maxAheadRead || len(p) == 0 || len(p) > maxAheadRead || off < 0 || off+int64(len(p)) > im.m.Size {
		n, err := im.ReadAt(ctx, p, off)
		return p[:n], func() {}, err
	}
	got, next := im.streams.follow(off, len(p))
	for _, a := range next {
		go im.readAhead(a)
	}
	if got != nil {
		<-got.done
		if got.err == nil {
			im.served(off, len(p))
			im.servedBytes(len(p), got.holes)
			return (*got.buf)[:len(p)], func() { aheadPool.Put(got.buf) }, nil
		}
		aheadPool.Put(got.buf)
	}
	n, err := im.ReadAt(ctx, p, off)
	return p[:n], func() {}, err
}

// follow records a read of n bytes at off. It returns the read ahead that holds exactly
// those bytes, if one was started, and the reads ahead to start now.
func (s *streams) follow(off int64, n int) (got *aheadRead, next []*aheadRead) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *stream
	for i := range s.slots {
		if e := &s.slots[i]; e.run > 0 && e.end == off {
			st = e
			break
		}
	}
	if st == nil {
		st = &s.slots[s.next]
		s.next = (s.next + 1) % streamSlots
		*st = stream{} // an unconsumed read ahead in it is left to the collector
	}
	if len(st.ahead) > 0 && st.ahead[0].off == off && st.ahead[0].n == n {
		got, st.ahead = st.ahead[0], st.ahead[1:]
	} else {
		st.ahead = nil // another size, or a gap: start over (what was read ahead is dropped)
	}
	st.end, st.run = off+int64(n), st.run+1
	if st.run >= 2 {
		at := st.end
		if k := len(st.ahead); k > 0 {
			at = st.ahead[k-1].off + int64(n)
		}
		for len(st.ahead) < aheadDepth {
			a := &aheadRead{off: at, n: n, buf: aheadPool.Get().(*[]byte), done: make(chan struct{})}
			st.ahead = append(st.ahead, a)
			next = append(next, a)
			at += int64(n)
		}
	}
	return got, next
}

// errNotAhead says a range was not read ahead: it is not all warm, or past the end.
var errNotAhead = errors.New("not read ahead")

// readAhead reads a's bytes into its buffer if the range is warm.
func (im *Image) readAhead(a *aheadRead) {
	defer close(a.done)
	if a.off+int64(a.n) > im.m.Size || !im.warm(a.off, a.n) {
		a.err = errNotAhead
		return
	}
	_, a.holes, a.err = im.readAt(context.Background(), (*a.buf)[:a.n], a.off, false)
	if a.err == nil {
		im.c.stats.readAheads.Add(1)
	}
}

// warm reports whether every data chunk of [off, off+n) is in memory or read by sub-block.
func (im *Image) warm(off int64, n int) bool {
	m, c := im.m, im.c
	for i := int(off / m.ChunkSize); i < len(m.Chunks) && int64(i)*m.ChunkSize < off+int64(n); i++ {
		if d := m.Chunks[i]; !d.IsZero() && !c.mem.has(d) && !c.subs.has(d) {
			return false
		}
	}
	return true
}
