package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

func TestOpenRaw(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw := chunkstore.NewChunk(storetest.Data(7, 64<<10)) // random: stored raw
	packed := chunkstore.NewChunk(make([]byte, 64<<10))   // zeros: stored compressed
	for _, ch := range []*chunkstore.Chunk{raw, packed} {
		if _, err := s.PutChunk(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	fd, n, err := s.OpenRaw(raw.Digest())
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if n != int64(len(raw.Data())) {
		t.Fatalf("length %d, want %d", n, len(raw.Data()))
	}
	buf := make([]byte, 4096)
	if err := PreadFull(fd, buf, chunkstore.ObjectHeaderSize+8192); err != nil || !bytes.Equal(buf, raw.Data()[8192:8192+4096]) {
		t.Fatalf("payload at 8192: %v or wrong bytes", err)
	}
	if err := PreadFull(fd, buf, chunkstore.ObjectHeaderSize+n-100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a read past the object's end: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := s.OpenRaw(packed.Digest()); !errors.Is(err, ErrNotRaw) {
		t.Fatalf("compressed chunk: %v, want ErrNotRaw", err)
	}
	if _, _, err := s.OpenRaw(chunkstore.Sum([]byte("absent"))); !chunkstore.IsNotFound(err) {
		t.Fatalf("absent chunk: %v, want not found", err)
	}
}
