package chunkstore

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkEncodeObjectRandom(b *testing.B) {
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	b.SetBytes(int64(len(data)))
	for range b.N {
		EncodeObject(data)
	}
}

func BenchmarkSum(b *testing.B) {
	data := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	for range b.N {
		Sum(data)
	}
}
