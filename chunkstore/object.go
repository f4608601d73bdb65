package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A stored chunk object (a file in a directory store, a body over HTTP or S3) is a 16-byte
// header followed by the payload:
//
//	offset 0  4 bytes  magic "BFSC"
//	offset 4  1 byte   object version, 1
//	offset 5  1 byte   encoding: 0 = raw, 1 = zstd
//	offset 6  2 bytes  zero
//	offset 8  8 bytes  uncompressed length, little endian
//
// The header tells how each chunk is stored; a chunk is compressed only when that saves space.
const (
	objectMagic      = "BFSC"
	objectVersion    = 1
	ObjectHeaderSize = 16

	EncodingRaw  = 0
	EncodingZstd = 1
)

// MaxChunkObjectSize bounds the body of a chunk object a backend accepts: the header,
// MaxChunkSize bytes and more than zstd's worst-case expansion of them (n/256 plus a little).
// Our encoder never exceeds ObjectHeaderSize+MaxChunkSize, since it stores raw what does not
// compress.
const MaxChunkObjectSize = ObjectHeaderSize + MaxChunkSize + MaxChunkSize/128

var (
	encoderOnce sync.Once
	encoder     *zstd.Encoder
	decoder     *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encoderOnce.Do(func() {
		var err error
		// EncodeAll/DecodeAll are safe for concurrent use; one codec serves all goroutines.
		encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
		decoder, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxChunkSize+1))
		if err != nil {
			panic(err)
		}
	})
	return encoder, decoder
}

var probePool = sync.Pool{New: func() any { b := make([]byte, 0, 20<<10); return &b }}

// EncodeObject returns the stored form of data as a header and a payload: the payload is
// zstd-compressed when that saves at least 1/16 of the size, and data itself otherwise (no
// copy). A cheap probe of the first 16 KiB skips compressing the whole of data that will not
// compress (images are often full of compressed or encrypted blocks).
func EncodeObject(data []byte) (hdr [ObjectHeaderSize]byte, payload []byte) {
	enc, _ := codecs()
	copy(hdr[:], objectMagic)
	hdr[4] = objectVersion
	hdr[5] = EncodingRaw
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
	worth := len(data) >= 4096
	if worth && len(data) > 64<<10 {
		bp := probePool.Get().(*[]byte)
		probe := data[:16<<10]
		worth = len(enc.EncodeAll(probe, (*bp)[:0])) < len(probe)*15/16
		probePool.Put(bp)
	}
	if worth {
		out := enc.EncodeAll(data, nil)
		if len(out) < len(data)-len(data)/16 {
			hdr[5] = EncodingZstd
			return hdr, out
		}
	}
	return hdr, data
}

// AppendObject appends the whole stored form of data to dst.
func AppendObject(dst, data []byte) []byte {
	hdr, payload := EncodeObject(data)
	return append(append(dst, hdr[:]...), payload...)
}

var errObject = errors.New("bad chunk object")

// ParseObjectHeader checks a stored object's header strictly and returns its encoding and
// the uncompressed length.
func ParseObjectHeader(obj []byte) (encoding byte, length int64, err error) {
	if len(obj) < ObjectHeaderSize || string(obj[:4]) != objectMagic {
		return 0, 0, fmt.Errorf("%w: no header", errObject)
	}
	if obj[4] != objectVersion || obj[6] != 0 || obj[7] != 0 {
		return 0, 0, fmt.Errorf("%w: unknown version %d", errObject, obj[4])
	}
	n := binary.LittleEndian.Uint64(obj[8:])
	if n == 0 || n > MaxChunkSize {
		return 0, 0, fmt.Errorf("%w: length %d out of range", errObject, n)
	}
	if obj[5] != EncodingRaw && obj[5] != EncodingZstd {
		return 0, 0, fmt.Errorf("%w: unknown encoding %d", errObject, obj[5])
	}
	return obj[5], int64(n), nil
}

// DecodeObject returns the uncompressed payload of a stored chunk object. It checks the header
// strictly; it does not check the digest (VerifyChunk does).
func DecodeObject(obj []byte) ([]byte, error) {
	enc, ln, err := ParseObjectHeader(obj)
	if err != nil {
		return nil, err
	}
	n := uint64(ln)
	payload := obj[ObjectHeaderSize:]
	switch enc {
	case EncodingRaw:
		if uint64(len(payload)) != n {
			return nil, fmt.Errorf("%w: raw payload is %d bytes, header says %d", errObject, len(payload), n)
		}
		return payload, nil
	case EncodingZstd:
		_, dec := codecs()
		out, err := dec.DecodeAll(payload, make([]byte, 0, n))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", errObject, err)
		}
		if uint64(len(out)) != n {
			return nil, fmt.Errorf("%w: decompressed to %d bytes, header says %d", errObject, len(out), n)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: unknown encoding %d", errObject, obj[5])
	}
}

// DecodeChunk decodes a stored object and verifies it as chunk d. Any failure is a
// *CorruptError naming d and where (a path or URL).
func DecodeChunk(d Digest, obj []byte, where string) (*Chunk, error) {
	data, err := DecodeObject(obj)
	if err != nil {
		return nil, &CorruptError{Digest: d, Where: where, Err: err}
	}
	c, err := VerifyChunk(d, data)
	if err != nil {
		err.(*CorruptError).Where = where
		return nil, err
	}
	return c, nil
}
