package chunkstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func sampleManifest() *Manifest {
	return &Manifest{
		Size:      2<<20 + 100,
		ChunkSize: 1 << 20,
		Chunks:    []Digest{Sum([]byte("one")), {}, Sum([]byte("three"))},
		Source:    Source{Format: "qcow2", HashAlgo: "sha512", HashValue: "abc123"},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	d, b, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifestFor(d, b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Encode()
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs:\n%s\n%s", b, b2)
	}
	if got.Holes() != 1 || got.ChunkLen(2) != 100 || got.ChunkLen(0) != 1<<20 {
		t.Fatalf("holes %d, last chunk %d", got.Holes(), got.ChunkLen(2))
	}
	want := "basefs-manifest 1\nsize 2097252\nchunk-size 1048576\nsource-format qcow2\nos-hash-algo sha512\nos-hash-value abc123\nchunks 3\n" +
		Sum([]byte("one")).String() + "\n-\n" + Sum([]byte("three")).String() + "\n"
	if string(b) != want {
		t.Fatalf("encoding:\n%s\nwant:\n%s", b, want)
	}
	// A manifest is accepted for a name only if it hashes to it.
	var ce *CorruptError
	if _, err := ParseManifestFor(Sum([]byte("other")), b); !errors.As(err, &ce) {
		t.Fatalf("ParseManifestFor with the wrong name = %v; want *CorruptError", err)
	}
}

func TestManifestStrict(t *testing.T) {
	_, good, _ := sampleManifest().Digest()
	s := string(good)
	d1 := Sum([]byte("one")).String()
	cases := map[string]string{
		"empty":             "",
		"unknown version":   strings.Replace(s, "manifest 1\n", "manifest 2\n", 1),
		"leading zero":      strings.Replace(s, "size 2097252", "size 02097252", 1),
		"plus sign":         strings.Replace(s, "size 2097252", "size +2097252", 1),
		"negative size":     strings.Replace(s, "size 2097252", "size -2097252", 1),
		"zero size":         strings.Replace(s, "size 2097252", "size 0", 1),
		"size too big":      strings.Replace(s, "size 2097252", "size 4097252", 1),
		"size too small":    strings.Replace(s, "size 2097252", "size 1048576", 1),
		"bad chunk size":    strings.Replace(s, "chunk-size 1048576", "chunk-size 1048577", 1),
		"tiny chunk size":   strings.Replace(s, "chunk-size 1048576", "chunk-size 4096", 1),
		"huge chunk size":   strings.Replace(s, "chunk-size 1048576", "chunk-size 33554432", 1),
		"order":             strings.Replace(s, "source-format qcow2\nos-hash-algo sha512\n", "os-hash-algo sha512\nsource-format qcow2\n", 1),
		"duplicate key":     strings.Replace(s, "source-format qcow2\n", "source-format qcow2\nsource-format raw\n", 1),
		"unknown key":       strings.Replace(s, "source-format qcow2\n", "colour blue\n", 1),
		"empty value":       strings.Replace(s, "source-format qcow2\n", "source-format \n", 1),
		"space in value":    strings.Replace(s, "source-format qcow2\n", "source-format q cow\n", 1),
		"upper-case digest": strings.Replace(s, d1, strings.ToUpper(d1), 1),
		"short digest":      strings.Replace(s, d1, d1[:63], 1),
		"zero digest":       strings.Replace(s, d1, strings.Repeat("0", 64), 1),
		"trailing bytes":    s + "\n",
		"missing newline":   strings.TrimSuffix(s, "\n"),
		"too few chunks":    strings.Replace(s, "chunks 3", "chunks 2", 1),
		"crlf":              strings.ReplaceAll(s, "\n", "\r\n"),
		"extra space":       strings.Replace(s, "size 2097252", "size  2097252", 1),
		"not a manifest":    "hello world\n",
	}
	for name, in := range cases {
		if _, err := ParseManifest([]byte(in)); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: ParseManifest = %v; want an ErrManifest error", name, err)
		}
	}
	if _, err := ParseManifest(good); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
}

func TestValidChunkSize(t *testing.T) {
	for _, n := range []int64{64 << 10, 128 << 10, 1 << 20, 16 << 20} {
		if err := ValidChunkSize(n); err != nil {
			t.Errorf("%d: %v", n, err)
		}
	}
	for _, n := range []int64{0, -1, 32 << 10, 1<<20 + 1, 3 << 20, 32 << 20} {
		if ValidChunkSize(n) == nil {
			t.Errorf("%d accepted", n)
		}
	}
}

func TestDigestParse(t *testing.T) {
	d := Sum([]byte("x"))
	p, err := ParseDigest(d.String())
	if err != nil || p != d {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.ToUpper(d.String()), d.String() + "0", " " + d.String()[1:], strings.Repeat("g", 64)} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}

func TestObjectEncoding(t *testing.T) {
	for _, data := range [][]byte{bytes.Repeat([]byte("ab"), 300000), {1, 2, 3}, make([]byte, 5000)} {
		obj := AppendObject(nil, data)
		c, err := DecodeChunk(Sum(data), obj, "test")
		if err != nil || !bytes.Equal(c.Data(), data) {
			t.Fatalf("decode: %v", err)
		}
	}
	if obj := AppendObject(nil, bytes.Repeat([]byte("ab"), 300000)); obj[5] != EncodingZstd || len(obj) > 100000 {
		t.Fatalf("compressible data stored with encoding %d in %d bytes", obj[5], len(obj))
	}
	obj := AppendObject(nil, []byte("hello"))
	for name, bad := range map[string][]byte{
		"short":    obj[:10],
		"magic":    append([]byte("XXXX"), obj[4:]...),
		"encoding": append(append([]byte{}, obj[:5]...), append([]byte{9}, obj[6:]...)...),
		"length":   append(obj[:len(obj):len(obj)], 'x'),
	} {
		var ce *CorruptError
		if _, err := DecodeChunk(Sum([]byte("hello")), bad, "test"); !errors.As(err, &ce) {
			t.Errorf("%s: %v; want *CorruptError", name, err)
		}
	}
}

// FuzzParseManifest: the parser never panics, and whatever it accepts re-encodes to exactly
// the same bytes (there is one encoding per manifest).
func FuzzParseManifest(f *testing.F) {
	_, good, _ := sampleManifest().Digest()
	f.Add(good)
	small, _ := (&Manifest{Size: 1, ChunkSize: 1 << 16, Chunks: []Digest{{}}}).Encode()
	f.Add(small)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted a non-canonical encoding:\n%q\nre-encodes as\n%q", b, out)
		}
	})
}
