package cache

import (
	"container/list"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
)

// fdCache keeps the object files of raw-stored local chunks open for sub-block reads, so a
// small read costs one pread, not an open, a header read and a close. Entries are reference
// counted: a file is closed only when it has left the cache and no read is using it, so a
// descriptor is never reused under a reader.
type fdCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *fdEntry, front = most recent
	m   map[chunkstore.Digest]*list.Element
}

type fdEntry struct {
	d    chunkstore.Digest
	fd   int
	n    int64 // the chunk's length
	refs int
	gone bool // left the cache; close when refs reaches 0
}

// maxOpenChunks bounds the chunk files kept open: 2 GiB of 64 KiB chunks; ~1 KiB of kernel
// memory each (file, dentry and inode pinned).
const maxOpenChunks = 32768

// openFilesReserve is the part of the open-file limit left to everything but chunk files:
// the FUSE device, sockets (control, metrics, origin and tier connections), the writable
// area's open files, the state's own files. A daemon serving a busy host uses a few hundred.
const openFilesReserve = 2048

// openChunkBudget is how many chunk object files sub-block reads keep open: the process's
// open-file limit less openFilesReserve (at least half of it, at most maxOpenChunks).
func openChunkBudget() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 512
	}
	n := max(int64(rl.Cur)-openFilesReserve, int64(rl.Cur/2))
	return int(max(min(n, maxOpenChunks), 16))
}

func newFDCache(max int) *fdCache {
	return &fdCache{max: max, ll: list.New(), m: make(map[chunkstore.Digest]*list.Element)}
}

// get returns d's open file (opening it with open on a miss), referenced: call put after use.
func (c *fdCache) get(d chunkstore.Digest, open func() (int, int64, error)) (*fdEntry, error) {
	c.mu.Lock()
	if el, ok := c.m[d]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*fdEntry)
		e.refs++
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	fd, n, err := open()
	if err != nil {
		return nil, err
	}
	e := &fdEntry{d: d, fd: fd, n: n, refs: 1}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[d]; ok {
		// Opened twice concurrently: the cache keeps the first; this one is closed by put.
		e.gone = true
		return e, nil
	}
	c.m[d] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		c.evictLocked(c.ll.Back())
	}
	return e, nil
}

func (c *fdCache) put(e *fdEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.gone && e.refs == 0 {
		unix.Close(e.fd)
	}
}

// drop forgets d's file (its chunk was quarantined or deleted).
func (c *fdCache) drop(d chunkstore.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[d]; ok {
		c.evictLocked(el)
	}
}

func (c *fdCache) evictLocked(el *list.Element) {
	e := c.ll.Remove(el).(*fdEntry)
	delete(c.m, e.d)
	e.gone = true
	if e.refs == 0 {
		unix.Close(e.fd)
	}
}

// closeAll closes every file not in use.
func (c *fdCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.ll.Len() > 0 {
		c.evictLocked(c.ll.Back())
	}
}
