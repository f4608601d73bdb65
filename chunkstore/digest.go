package chunkstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// DigestSize is the length of a Digest in bytes.
const DigestSize = sha256.Size

// Digest is the SHA-256 of a chunk's uncompressed bytes, or of a manifest's canonical encoding
// (then it is the image's name). It is comparable and usable as a map key. The zero Digest is
// never the digest of any content; manifests use it to mark a hole (an all-zero chunk).
type Digest [DigestSize]byte

// Sum returns the digest of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

// ParseDigest parses exactly 64 lower-case hexadecimal characters.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*DigestSize {
		return d, fmt.Errorf("digest %q: want %d hex characters, have %d", truncate(s), 2*DigestSize, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return d, fmt.Errorf("digest %q: character %q at %d is not lower-case hex", truncate(s), c, i)
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %w", truncate(s), err)
	}
	return d, nil
}

// MustParseDigest is ParseDigest for constants in tests; it panics on error.
func MustParseDigest(s string) Digest {
	d, err := ParseDigest(s)
	if err != nil {
		panic(err)
	}
	return d
}

// String returns the 64-character lower-case hex form.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Short returns the first 12 hex characters, for logs and people.
func (d Digest) Short() string { return hex.EncodeToString(d[:6]) }

// IsZero reports whether d is the zero Digest (the hole marker in a manifest).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler (JSON output uses the hex form).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
