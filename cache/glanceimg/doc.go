// Package glanceimg makes Glance images usable by the cache (package cache knows nothing of
// Glance): by id, by nova's name, lazily by range, and through a fleet's shared tier.
//
// Layer.Ensure makes a Glance image usable by id: by the manifest its basefs_manifest
// property names (accepted only if its source is that image);
// else, for a raw image, as a provisional image once its first 256 KiB (one range request)
// pass nova's inspection (inspect.go: an image that is not raw, or unsafe, is refused, recorded
// in Config.Refusals for status and never fetched again by this process; nova's name of it
// does not resolve); else (qcow2 and other formats) by streaming
// it once, checking the stream against os_hash_value and checksum, converting it with
// qemu-img and chunking it into the local state (nothing kept on any failure). The Glance
// origin is the last origin: it serves chunks of raw Glance images by range, each verified
// against the digest its manifest gives (wrong bytes are counted as origin corruption and
// answered with an error, never served).
//
// Nova's names: the alias table <state>/aliases/<sha1 of image id> holds the Glance id and,
// once the image's manifest is local, its digest (an adopted download: the digest alone);
// Layer.Resolve (Resolver) and Layer.Aliases serve package fs, so <sha1> and <sha1>_<N>
// read the same bytes as <digest> and <digest>_<N>. A name not in the table is looked up in the Glance catalog
// (Config.Catalog: Glance's listing, inverted) and the image ensured.
//
// A provisional image is a raw Glance image without a manifest, known by its Glance id, known
// to the cache under ProvisionalKey(id) (never a manifest's digest) and read through its
// ChunkSource (provisional.go). Chunk i is the byte range [i·cs, (i+1)·cs) of Glance's data (cs: chunkstore.DefaultChunkSize), fetched with one Range request per run of
// missing chunks (a read spanning several, or a sequential stream whose window doubles up to
// 16 MiB; random reads fetch just their chunks), one fetch per chunk however many readers wait.
// Each chunk is hashed as it arrives and its digest kept; later reads are verified against it
// (memory, local state, or Glance again). Background fill fetches the rest in 16 MiB ranges.
// When every chunk has been seen the whole image is hashed (from the verified chunks) and
// compared with os_hash_value and checksum: on a match the manifest is written (after every
// chunk is durable), then the alias's digest; on a mismatch the image is marked bad — every
// later read fails (EIO at the FUSE boundary) and the Glance origin's corruption counter grows.
//
// What is guaranteed when, for a provisional image: bytes are trusted on first fetch (Glance
// gives nothing finer than a whole-image hash to check a range against); from then on they
// are exactly the bytes first fetched (each chunk verified against the digest kept). The
// whole-image check against os_hash_value comes when the image is complete; only then does
// it get a content-addressed name. Its files are opened with direct I/O, so a mark of bad
// is not hidden by the kernel's page cache. Provisional state lives in memory: after a
// restart the image is provisional again (its alias records the id) and chunks are fetched
// again.
//
// Shared tier: a lazily read image's chunks reach the write-back tier as they arrive (named
// by their own SHA-256, so safe there before the whole-image check); when it completes, the
// chunks the tier lacks, its manifest, then a Glance index entry glance/<id> → manifest digest
// and the os_hash_value it was checked against (GlanceIndex, index.go; kept by a shared tier
// that stores opaque objects, chunkstore/s3). Ensure of a raw image without basefs_manifest
// asks each such tier for the entry before going lazy (indexedImage) and uses the manifest it
// names only if that manifest (fetched by digest) describes this Glance image and both it and
// the entry carry Glance's current os_hash_algo and os_hash_value. An entry is thus a hint:
// a wrong or stale one costs a lookup, never wrong bytes.
//
// Lock order: Layer.mu, then Cache.mu or a provisional's mu; no lock is held across I/O.
package glanceimg
