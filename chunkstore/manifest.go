package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// Chunk sizes a manifest may use: powers of two in [MinChunkSize, MaxChunkSize].
const (
	MinChunkSize = 64 << 10
	MaxChunkSize = 16 << 20
	// DefaultChunkSize is 64 KiB, chosen by measurement on a real OS boot (README, "Chunk
	// size"): a Debian guest reads 33 MiB in scattered pieces before its login prompt; the
	// whole chunks around them are 41 MiB at 64 KiB (1.24×), 48 MiB at 128 KiB, 59 MiB at
	// 256 KiB and 108 MiB at 1 MiB (3.3×). The price is more requests (655 instead of 109),
	// paid once per read spanning several chunks (they are fetched together) and hidden by
	// the boot profile's parallel prefetch on far links. Manifests carry their own chunk
	// size: images imported at another size read as before.
	DefaultChunkSize = 64 << 10
	// MaxImageSize bounds manifests against absurd sizes (and their chunk tables) from outside.
	MaxImageSize = 1 << 50 // 1 PiB
)

// ManifestVersion is the only encoding version this code reads and writes.
const ManifestVersion = 1

const manifestMagic = "basefs-manifest"

// Source says where an image came from. Empty fields are absent from the encoding.
type Source struct {
	Format    string // the original disk format, e.g. "raw", "qcow2"
	GlanceID  string // the Glance image id, when it came from Glance
	HashAlgo  string // Glance os_hash_algo, e.g. "sha512"
	HashValue string // Glance os_hash_value of the original image data
}

// Manifest describes one raw image: its exact size, its chunk size and the digest of every
// chunk (the zero Digest marks a hole: an all-zero chunk, never stored or fetched). The last
// chunk may be short; its digest is of its actual bytes.
type Manifest struct {
	Size      int64
	ChunkSize int64
	Chunks    []Digest
	Source    Source
}

// NumChunks returns how many chunks an image of size bytes has at chunkSize.
func NumChunks(size, chunkSize int64) int64 { return (size + chunkSize - 1) / chunkSize }

// ChunkLen returns the length of chunk i (the last one may be short).
func (m *Manifest) ChunkLen(i int) int64 {
	off := int64(i) * m.ChunkSize
	return min(m.ChunkSize, m.Size-off)
}

// Holes counts the hole chunks.
func (m *Manifest) Holes() int {
	n := 0
	for _, d := range m.Chunks {
		if d.IsZero() {
			n++
		}
	}
	return n
}

// ValidChunkSize reports whether n is an allowed chunk size, with an error that says why not.
func ValidChunkSize(n int64) error {
	if n < MinChunkSize || n > MaxChunkSize || bits.OnesCount64(uint64(n)) != 1 {
		return fmt.Errorf("chunk size %d is not a power of two between %d (64 KiB) and %d (16 MiB)", n, MinChunkSize, MaxChunkSize)
	}
	return nil
}

// Validate checks the manifest's invariants: sizes add up and source fields are encodable.
func (m *Manifest) Validate() error {
	if err := ValidChunkSize(m.ChunkSize); err != nil {
		return err
	}
	if m.Size <= 0 || m.Size > MaxImageSize {
		return fmt.Errorf("image size %d is out of range (1 byte to 1 PiB)", m.Size)
	}
	if want := NumChunks(m.Size, m.ChunkSize); int64(len(m.Chunks)) != want {
		return fmt.Errorf("%d chunk entries for a %d-byte image at chunk size %d; want %d", len(m.Chunks), m.Size, m.ChunkSize, want)
	}
	for _, f := range m.sourceFields() {
		if f.value != "" {
			if err := checkValue(f.value); err != nil {
				return fmt.Errorf("source %s: %w", f.key, err)
			}
		}
	}
	return nil
}

type field struct {
	key   string
	value string
	set   func(*Source, string)
}

// sourceFields lists the source fields in their canonical order.
func (m *Manifest) sourceFields() []field {
	return []field{
		{"source-format", m.Source.Format, func(s *Source, v string) { s.Format = v }},
		{"glance-id", m.Source.GlanceID, func(s *Source, v string) { s.GlanceID = v }},
		{"os-hash-algo", m.Source.HashAlgo, func(s *Source, v string) { s.HashAlgo = v }},
		{"os-hash-value", m.Source.HashValue, func(s *Source, v string) { s.HashValue = v }},
	}
}

// checkValue allows 1 to 256 printable ASCII characters without spaces.
func checkValue(v string) error {
	if len(v) == 0 || len(v) > 256 {
		return fmt.Errorf("value must have 1 to 256 characters, has %d", len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return fmt.Errorf("value %q has a character outside printable ASCII or a space", truncate(v))
		}
	}
	return nil
}

// Encode returns the canonical encoding:
//
//	basefs-manifest 1
//	size <bytes>
//	chunk-size <bytes>
//	[source-format <v>] [glance-id <v>] [os-hash-algo <v>] [os-hash-value <v>]   (one per line, this order)
//	chunks <count>
//	<64 hex digits, or "-" for a hole>            (count lines)
//
// Every line ends with "\n"; numbers are decimal without leading zeros. There is exactly one
// encoding per manifest, so its SHA-256 (the image digest) names the content.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	var b bytes.Buffer
	b.Grow(64 + len(m.Chunks)*(2*DigestSize+1))
	fmt.Fprintf(&b, "%s %d\nsize %d\nchunk-size %d\n", manifestMagic, ManifestVersion, m.Size, m.ChunkSize)
	for _, f := range m.sourceFields() {
		if f.value != "" {
			fmt.Fprintf(&b, "%s %s\n", f.key, f.value)
		}
	}
	fmt.Fprintf(&b, "chunks %d\n", len(m.Chunks))
	var hexbuf [2 * DigestSize]byte
	for _, d := range m.Chunks {
		if d.IsZero() {
			b.WriteString("-\n")
			continue
		}
		const hx = "0123456789abcdef"
		for i, c := range d {
			hexbuf[2*i], hexbuf[2*i+1] = hx[c>>4], hx[c&15]
		}
		b.Write(hexbuf[:])
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// Digest returns the image digest: the SHA-256 of the canonical encoding, with the encoding.
func (m *Manifest) Digest() (Digest, []byte, error) {
	b, err := m.Encode()
	if err != nil {
		return Digest{}, nil, err
	}
	return Sum(b), b, nil
}

// ErrManifest is wrapped by every manifest parse error.
var ErrManifest = errors.New("invalid manifest")

// ParseManifest parses a canonical encoding strictly: an unknown version, an unknown or
// misplaced line, sizes that do not add up, a digest that is not lower-case hex, or anything
// not byte-for-byte canonical is an error wrapping ErrManifest.
func ParseManifest(b []byte) (*Manifest, error) {
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	return m, nil
}

// ParseManifestFor parses b and checks that it is the manifest named want (content addressing:
// a manifest is accepted for a name only if it hashes to that name).
func ParseManifestFor(want Digest, b []byte) (*Manifest, error) {
	if got := Sum(b); got != want {
		return nil, &CorruptError{Kind: "manifest", Digest: want, Got: got}
	}
	return ParseManifest(b)
}

// FetchedManifest parses the bytes a remote store returned for manifest d (found at where):
// retry says whether fetching them again may help (wrong bytes: maybe damaged on the way);
// bytes that are the ones named d but no manifest are the publisher's fault and would come
// again.
func FetchedManifest(d Digest, b []byte, where string) (m *Manifest, retry bool, err error) {
	m, err = ParseManifestFor(d, b)
	var ce *CorruptError
	switch {
	case err == nil:
		return m, false, nil
	case errors.As(err, &ce):
		ce.Where = where
		return nil, true, ce
	default:
		return nil, false, &CorruptError{Kind: "manifest", Digest: d, Where: where, Err: err}
	}
}

func parseManifest(b []byte) (*Manifest, error) {
	p := lineReader{b: b}
	var m Manifest
	line, err := p.next()
	if err != nil {
		return nil, err
	}
	key, val, _ := bytes.Cut(line, []byte(" "))
	if string(key) != manifestMagic {
		return nil, fmt.Errorf("line 1: not a basefs manifest")
	}
	v, err := parseUint(val)
	if err != nil {
		return nil, fmt.Errorf("line 1: version: %v", err)
	}
	if v != ManifestVersion {
		return nil, fmt.Errorf("line 1: unknown version %d (this basefs reads version %d)", v, ManifestVersion)
	}
	if m.Size, err = p.keyedUint("size"); err != nil {
		return nil, err
	}
	if m.ChunkSize, err = p.keyedUint("chunk-size"); err != nil {
		return nil, err
	}
	if err := ValidChunkSize(m.ChunkSize); err != nil {
		return nil, err
	}
	if m.Size <= 0 || m.Size > MaxImageSize {
		return nil, fmt.Errorf("image size %d is out of range", m.Size)
	}
	// Source fields, each optional, in canonical order, then "chunks".
	fields := m.sourceFields()
	next := 0
	var count int64
	for {
		line, err := p.next()
		if err != nil {
			return nil, err
		}
		key, val, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			return nil, fmt.Errorf("line %d: want \"key value\"", p.n)
		}
		if string(key) == "chunks" {
			if count, err = parseUint(val); err != nil {
				return nil, fmt.Errorf("line %d: chunks: %v", p.n, err)
			}
			break
		}
		i := next
		for i < len(fields) && fields[i].key != string(key) {
			i++
		}
		if i == len(fields) {
			return nil, fmt.Errorf("line %d: unknown or out-of-order key %q", p.n, truncate(string(key)))
		}
		if err := checkValue(string(val)); err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", p.n, key, err)
		}
		fields[i].set(&m.Source, string(val))
		next = i + 1
	}
	if want := NumChunks(m.Size, m.ChunkSize); count != want {
		return nil, fmt.Errorf("chunks %d does not match size %d at chunk size %d (want %d)", count, m.Size, m.ChunkSize, want)
	}
	// Every remaining line is 65 or 2 bytes; check the total before allocating.
	if rest := int64(len(b) - p.off); rest < 2*count || rest > (2*DigestSize+1)*count {
		return nil, fmt.Errorf("%d bytes of chunk table cannot hold %d entries", rest, count)
	}
	m.Chunks = make([]Digest, count)
	for i := range m.Chunks {
		line, err := p.next()
		if err != nil {
			return nil, err
		}
		if len(line) == 1 && line[0] == '-' {
			continue
		}
		d, err := ParseDigest(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: chunk %d: %v", p.n, i, err)
		}
		if d.IsZero() {
			return nil, fmt.Errorf("line %d: chunk %d: the zero digest is written as \"-\"", p.n, i)
		}
		m.Chunks[i] = d
	}
	if p.off != len(b) {
		return nil, fmt.Errorf("trailing bytes after the chunk table")
	}
	return &m, nil
}

type lineReader struct {
	b   []byte
	off int
	n   int
}

func (p *lineReader) next() ([]byte, error) {
	p.n++
	i := bytes.IndexByte(p.b[p.off:], '\n')
	if i < 0 {
		return nil, fmt.Errorf("line %d: missing or unterminated", p.n)
	}
	line := p.b[p.off : p.off+i]
	p.off += i + 1
	return line, nil
}

func (p *lineReader) keyedUint(key string) (int64, error) {
	line, err := p.next()
	if err != nil {
		return 0, err
	}
	k, v, ok := bytes.Cut(line, []byte(" "))
	if !ok || string(k) != key {
		return 0, fmt.Errorf("line %d: want %q", p.n, key)
	}
	n, err := parseUint(v)
	if err != nil {
		return 0, fmt.Errorf("line %d: %s: %v", p.n, key, err)
	}
	return n, nil
}

// parseUint accepts only canonical decimal: no sign, no leading zeros, no spaces, ≤ 2^62.
func parseUint(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("%q is not a canonical decimal number", truncate(string(b)))
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a canonical decimal number", truncate(string(b)))
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("%q is out of range", truncate(string(b)))
	}
	return n, nil
}
