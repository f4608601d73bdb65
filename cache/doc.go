// Package cache owns a host's local state and the read path over it.
//
// Cache.Chunk returns a verified chunk: from a bounded in-memory cache of chunks verified since
// they were last read from disk or network; else from the local state, hashed as it is read;
// else fetched from the origins in order (chunkstore/tier), once however many readers wait (singleflight keyed
// by digest), verified, stored atomically, and served. A local chunk that fails verification
// is moved to <state>/quarantine, counted and logged, then fetched again; if no origin gives
// good bytes the read fails — wrong bytes are never returned. Wrong bytes from an origin are
// counted per origin, apart from local corruption.
//
// Image.ReadAt maps an image offset to chunks: holes read as zeros with no I/O; the chunks
// one read spans are read at the same time (a cold read waits one round trip). A read of
// a chunk that is not in memory uses sub-block digests when it has them: when a raw-stored
// chunk is verified whole, the BLAKE3 digests of its 64 KiB sub-blocks (one, for a 64 KiB
// chunk) are kept
// (memory only, bounded), and a partial read preads just the sub-blocks it covers from the
// chunk's object file (kept open, reference counted) and checks them — so small reads never
// re-hash a whole chunk, and every byte is still checked after it was last read from disk.
//
// A fetched chunk is served as soon as it is verified; background writers make it durable in
// the local state, and until then it is found in the pending map, so it is never fetched
// twice. Close waits for them.
//
// # The image cache manager
//
// Manager (cleanup, capacity, scrub, background fill, boot profiles) follows nova's rules at
// chunk granularity: an image in use (an instance overlay backed by one of its views, found by
// the daemon's InUse scan, or an open file) is never removed; an unused one goes after the
// minimum age since its last use (a read, an open or Touch — nova's utime — never a lookup,
// persisted as its manifest's mtime; Image.LastUse), with every chunk no remaining image
// references. Remove is the same removal now (nova's unlink; ErrInUse when in use); Adopt makes
// a finished download an image, its exact bytes chunked (maintain.go). The capacity bound
// evicts unreferenced chunks, then chunks of unused images, least recently read first, and
// chunks of images in use only if an origin has them. A cold image's boot profile is fetched
// ahead of the guest, started in its recorded order, a few chunks at a time (fill.go); it
// starts nothing while a guest read waits on a chunk it is not fetching itself. Background
// fill waits for the profiles and yields to every fetch a guest read waits on.
//
// Reads of cached chunks never wait on the fetch of another chunk (flights are per digest).
//
// # Glance images
//
// With a Glance origin (Config.Glance) EnsureGlance makes a Glance image usable by id: by the
// manifest its basefs_manifest property names (accepted only if its source is that image);
// else, for a raw image, as a provisional image; else (qcow2 and other formats) by streaming
// it once, checking the stream against os_hash_value and checksum, converting it with
// qemu-img and chunking it into the local state (nothing kept on any failure). The Glance
// origin is the last origin: it serves chunks of raw Glance images by range, each verified
// against the digest its manifest gives (wrong bytes are counted as origin corruption and
// answered with an error, never served).
//
// Nova's names: the alias table <state>/aliases/<sha1 of image id> holds the Glance id and,
// once the image's manifest is local, its digest (an adopted download: the digest alone);
// ResolveAlias and Aliases serve package fs, so <sha1> and <sha1>_<N> read the same bytes as
// <digest> and <digest>_<N>. A name not in the table is looked up in the Glance catalog
// (Config.Catalog: Glance's listing, inverted) and the image ensured.
//
// A provisional image is a raw Glance image without a manifest, known by its Glance id and
// kept in Cache.images under ProvisionalKey(id) (never a manifest's digest). Chunk i is the
// byte range [i·cs, (i+1)·cs) of Glance's data (cs: chunkstore.DefaultChunkSize), fetched
// with one Range request per run of missing chunks (a read spanning several, or a sequential stream whose window doubles up to
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
// # Tiers and write-back
//
// Config.Origins are tiers asked in order after the local state (chunkstore/tier.Tiered, the
// one place that loop is written, with each origin's counters): typically the shared tier
// (an s3:// bucket every host reads, S3Tier) and then the origins behind it (dir://, http://,
// Glance, which is always last). A tier that answers not found, fails (an S3 tier in its
// cooldown answers at once) or serves wrong bytes is counted — misses, errors, corrupt, per
// origin, with a hit ratio — and the next one is asked; wrong bytes are never served. With
// Config.WriteBack, chunks and manifests fetched from behind the first shared tier are also
// written to it, asynchronously and put-if-absent (writeback.go), so the next host finds them
// there. Publish fills a tier (dir:// or s3://) ahead of time, manifest after chunks.
//
// Raw Glance images need no publish for that: a provisional image's chunks are offered to the
// write-back tier as they arrive from Glance (keep; named by their own SHA-256, so safe there
// before the whole-image check), and when it completes the host writes the chunks the tier
// lacks, the manifest, then a Glance index entry glance/<id> → manifest digest and the
// os_hash_value it was checked against (GlanceIndex, an optional interface of a shared tier;
// S3Tier has it). EnsureGlance of a raw image without basefs_manifest asks each such tier for
// the entry before going provisional (indexedImage) and uses the manifest it names only if
// that manifest (fetched by digest) describes this Glance image and both it and the entry
// carry Glance's current os_hash_algo and os_hash_value; chunks then come from the tier and,
// behind it, from Glance by range, each verified against the manifest. An entry is thus a
// hint: a wrong or stale one costs a lookup, never wrong bytes.
//
// Lock order: Cache.mu, then an lru's mu, or Cache.mu then provisional.mu; no lock is held
// across I/O.
//
// List and Verify describe and re-hash what a local state holds (basefs ls, basefs verify).
package cache
