package peer

import (
	"encoding/binary"
	"hash/fnv"
	"slices"

	"github.com/basefs/basefs/chunkstore"
)

// member is one host of the fleet as the ranking sees it.
type member struct {
	name string // unique, stable: the memberlist node name
	addr string // IP:PORT of its peer HTTP server
	seed uint64 // fnv-64a of name, computed once
}

func newMember(name, addr string) member {
	h := fnv.New64a()
	h.Write([]byte(name))
	return member{name: name, addr: addr, seed: h.Sum64()}
}

// score is the rendezvous (highest random weight) score of member m for chunk d: a digest is
// already uniform, so mixing the member's seed with its first 8 bytes through splitmix64's
// finalizer is enough.
func score(m member, d chunkstore.Digest) uint64 {
	x := m.seed ^ binary.LittleEndian.Uint64(d[:8])
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// rank returns the first n members in chunk d's owner order (highest score first). Removing a
// member moves only the chunks it owned; the rest keep their owners.
func rank(ms []member, d chunkstore.Digest, n int) []member {
	type scored struct {
		m member
		s uint64
	}
	all := make([]scored, len(ms))
	for i, m := range ms {
		all[i] = scored{m, score(m, d)}
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.s > b.s:
			return -1
		case a.s < b.s:
			return 1
		}
		return cmpString(a.m.name, b.m.name)
	})
	out := make([]member, 0, min(n, len(all)))
	for _, s := range all[:min(n, len(all))] {
		out = append(out, s.m)
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
