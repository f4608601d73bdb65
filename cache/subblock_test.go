package cache

import (
	"testing"

	"lukechampine.com/blake3"

	"github.com/basefs/basefs/chunkstore/storetest"
)

// subDigest is BLAKE3 itself, at every length a sub-block can have.
func TestSubDigestIsBLAKE3(t *testing.T) {
	data := storetest.Data(9, SubBlockSize)
	for _, n := range []int{1, 63, 64, 65, 1023, 1024, 1025, 2048, 5000, 8192, SubBlockSize - 1, SubBlockSize} {
		if got, want := subDigest(data[:n]), blake3.Sum256(data[:n]); got != want {
			t.Fatalf("%d bytes: %x, BLAKE3 says %x", n, got, want)
		}
	}
}

func BenchmarkSubDigest(b *testing.B) {
	data := storetest.Data(9, SubBlockSize)
	b.SetBytes(SubBlockSize)
	for b.Loop() {
		subDigest(data)
	}
}
