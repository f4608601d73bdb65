package local

import "testing"

// BenchmarkReserve is what --min-free costs each chunk write: one statfs.
func BenchmarkReserve(b *testing.B) {
	s := &Store{root: b.TempDir(), minFree: 1}
	for b.Loop() {
		if err := s.reserve(65536); err != nil {
			b.Fatal(err)
		}
	}
}
