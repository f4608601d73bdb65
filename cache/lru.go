package cache

import (
	"container/list"
	"sync"

	"github.com/basefs/basefs/chunkstore"
)

// lru is a map from chunk digest to V bounded by the total cost of its values; the least
// recently used go first. It is safe for concurrent use.
type lru[V any] struct {
	mu    sync.Mutex
	max   int64
	size  int64
	cost  func(V) int64
	ll    *list.List // front = most recent
	items map[chunkstore.Digest]*list.Element
}

type lruEntry[V any] struct {
	d chunkstore.Digest
	v V
}

func newLRU[V any](max int64, cost func(V) int64) *lru[V] {
	return &lru[V]{max: max, cost: cost, ll: list.New(), items: make(map[chunkstore.Digest]*list.Element)}
}

func (l *lru[V]) get(d chunkstore.Digest) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[d]
	if !ok {
		var zero V
		return zero, false
	}
	l.ll.MoveToFront(e)
	return e.Value.(*lruEntry[V]).v, true
}

// has reports whether d is held, without counting as a use.
func (l *lru[V]) has(d chunkstore.Digest) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.items[d]
	return ok
}

func (l *lru[V]) add(d chunkstore.Digest, v V) {
	n := l.cost(v)
	if n > l.max {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[d]; ok {
		l.ll.MoveToFront(e)
		return
	}
	l.items[d] = l.ll.PushFront(&lruEntry[V]{d, v})
	l.size += n
	for l.size > l.max {
		old := l.ll.Remove(l.ll.Back()).(*lruEntry[V])
		delete(l.items, old.d)
		l.size -= l.cost(old.v)
	}
}

func (l *lru[V]) remove(d chunkstore.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[d]; ok {
		l.ll.Remove(e)
		delete(l.items, d)
		l.size -= l.cost(e.Value.(*lruEntry[V]).v)
	}
}

func (l *lru[V]) purge() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ll.Init()
	clear(l.items)
	l.size = 0
}
