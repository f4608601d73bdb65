// Package chunkstore owns basefs's data model and its storage interfaces.
//
// An image is cut into fixed-size, aligned chunks (a power of two from 64 KiB to 16 MiB;
// DefaultChunkSize is 64 KiB), each named by the SHA-256 of its uncompressed bytes (Digest).
// A Manifest lists the digest of every chunk, or a hole for an all-zero chunk, with the image's
// exact size and where it came from; its canonical encoding is strict and unique, and its
// SHA-256 is the image digest: the image's name on every host.
//
// Invariants:
//   - A *Chunk always holds bytes that hash to its digest: NewChunk and VerifyChunk are the
//     only ways to make one (UnverifiedChunk exists for the bench-only no-verify switch).
//   - Every backend returns chunks built with VerifyChunk (DecodeChunk) and manifests parsed
//     with ParseManifestFor, so nothing a store returns can disagree with its name. A mismatch
//     is a *CorruptError naming the object; absence wraps ErrNotFound.
//   - Puts are put-if-absent: objects are immutable once written.
//
// Stored chunk objects carry a 16-byte header that says how each is stored (raw, or zstd when
// that saves space); see EncodeObject. Backends live in sub-packages (local, httpstore, s3) and
// all pass the suite in storetest (s3 against a real Ceph RGW); wrappers that are origins
// themselves in tier (the ordered origins) and peer (the fleet's other hosts, asked first).
package chunkstore
