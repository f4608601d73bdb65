package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
)

// Chunk is a chunk's uncompressed bytes together with their digest. The only ways to make one
// compute or check the digest (NewChunk, VerifyChunk), so holding a *Chunk means holding bytes
// that match their digest: this is the one place verification happens. The bytes must not be
// modified after the Chunk is made.
type Chunk struct {
	digest Digest
	data   []byte
}

// NewChunk hashes data and returns it as a Chunk.
func NewChunk(data []byte) *Chunk { return &Chunk{digest: Sum(data), data: data} }

// VerifyChunk returns data as the chunk named want, or a *CorruptError if data does not hash to
// want. Every backend builds the chunks it returns with it.
func VerifyChunk(want Digest, data []byte) (*Chunk, error) {
	if got := Sum(data); got != want {
		return nil, &CorruptError{Digest: want, Got: got}
	}
	return &Chunk{digest: want, data: data}, nil
}

// Digest returns the chunk's digest.
func (c *Chunk) Digest() Digest { return c.digest }

// Data returns the chunk's uncompressed bytes; callers must not modify them.
func (c *Chunk) Data() []byte { return c.data }

// ErrNotFound is returned (wrapped) when a store does not hold the object asked for.
var ErrNotFound = errors.New("not found")

// CorruptError says that the bytes found for an object do not hash to its name, or that its
// stored encoding cannot be decoded. Got is the zero Digest when the bytes could not be decoded.
type CorruptError struct {
	Kind   string // "chunk" or "manifest"; empty means "chunk"
	Digest Digest // the name the object was asked for by
	Got    Digest // what its bytes hash to (zero if they could not be decoded)
	Where  string // the backend location, e.g. a file path or URL; may be empty
	Err    error  // a decoding error, if any
}

func (e *CorruptError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "chunk"
	}
	msg := fmt.Sprintf("corrupt %s %s", kind, e.Digest)
	if e.Where != "" {
		msg += " at " + e.Where
	}
	switch {
	case e.Err != nil:
		msg += ": " + e.Err.Error()
	case !e.Got.IsZero():
		msg += ": content hashes to " + e.Got.String()
	}
	return msg
}

func (e *CorruptError) Unwrap() error { return e.Err }

// IsCorrupt reports whether err is, or wraps, a *CorruptError.
func IsCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}

// IsNotFound reports whether err is, or wraps, ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// zeroes is compared against by IsZeroes; bytes.Equal runs as wide vector compares.
var zeroes [64 << 10]byte

// IsZeroes reports whether every byte of b is zero.
func IsZeroes(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroes))
		if !bytes.Equal(b[:n], zeroes[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// UnverifiedChunk pairs data with d without checking. Only the bench-only no-verify read path
// uses it; everything else builds chunks with NewChunk or VerifyChunk.
func UnverifiedChunk(d Digest, data []byte) *Chunk { return &Chunk{digest: d, data: data} }
