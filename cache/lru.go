package cache

import (
	"container/list"
	"sync"

	"github.com/basefs/basefs/chunkstore"
)

// verifiedLRU keeps recently verified chunks in memory, bounded in bytes, so that many small
// reads of one chunk hash it once. Only chunks that were verified since they were last read
// from disk or network enter it.
type verifiedLRU struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List // front = most recent; values are *chunkstore.Chunk
	items map[chunkstore.Digest]*list.Element
}

func newVerifiedLRU(max int64) *verifiedLRU {
	return &verifiedLRU{max: max, ll: list.New(), items: make(map[chunkstore.Digest]*list.Element)}
}

func (l *verifiedLRU) get(d chunkstore.Digest) *chunkstore.Chunk {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[d]
	if !ok {
		return nil
	}
	l.ll.MoveToFront(e)
	return e.Value.(*chunkstore.Chunk)
}

func (l *verifiedLRU) add(c *chunkstore.Chunk) {
	n := int64(len(c.Data()))
	if n > l.max {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[c.Digest()]; ok {
		l.ll.MoveToFront(e)
		return
	}
	l.items[c.Digest()] = l.ll.PushFront(c)
	l.size += n
	for l.size > l.max {
		e := l.ll.Back()
		old := l.ll.Remove(e).(*chunkstore.Chunk)
		delete(l.items, old.Digest())
		l.size -= int64(len(old.Data()))
	}
}

// remove drops d (after its local copy was found corrupt, say).
func (l *verifiedLRU) remove(d chunkstore.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[d]; ok {
		l.ll.Remove(e)
		delete(l.items, d)
		l.size -= int64(len(e.Value.(*chunkstore.Chunk).Data()))
	}
}

// purge empties the cache (tests and the bench-only no-verify switch use it).
func (l *verifiedLRU) purge() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ll.Init()
	clear(l.items)
	l.size = 0
}
