// Package cache owns a host's local state and the read path over it.
//
// Cache.Chunk returns a verified chunk: from a bounded in-memory cache of chunks verified since
// they were last read from disk or network; else from the local state, hashed as it is read;
// else fetched from the origins in order (chunkstore/tier), once however many readers wait (singleflight keyed
// by digest), verified, stored atomically, and served. A local chunk that fails verification
// is moved to <state>/quarantine, counted and logged, then fetched again (one owner,
// repair.go, whoever found it: a read, a sub-block read, scrub); if no origin gives
// good bytes the read fails — wrong bytes are never returned. Wrong bytes from an origin are
// counted per origin, apart from local corruption.
//
// Image.ReadAt maps an image offset to chunks: holes read as zeros with no I/O; the chunks
// one read spans are read at the same time (a cold read waits one round trip). A read of
// a chunk that is not in memory uses sub-block digests when it has them: when a raw-stored
// chunk is verified whole, the BLAKE3 digests of its 16 KiB sub-blocks are kept (memory only,
// bounded), and a partial read preads just the sub-blocks it covers from the chunk's object
// file (kept open, reference counted) and checks them — so small reads never re-hash a whole
// chunk, and every byte is still checked after it was last read from disk.
//
// A fetched chunk is served as soon as it is verified; background writers make it durable in
// the local state, and until then it is found in the pending map, so it is never fetched
// twice. They write what is queued in batches, one barrier pair per batch (local.Batch), and a
// chunk leaves pending only after its batch's Commit returned (persist.go). Close waits for them.
//
// # The image cache manager
//
// Manager (cleanup, capacity, scrub, background fill, boot profiles) follows nova's rules at
// chunk granularity: an image in use (an instance overlay backed by one of its views, found by
// the daemon's InUse scan, or an open file) is never removed; an unused one goes after the
// minimum age since its last use (a read, an open or Touch — nova's utime — never a lookup,
// persisted as its manifest's mtime, reads apart in uses/; one owner: lastuse.go), with every chunk no remaining image
// references. Remove is the same removal now (nova's unlink; ErrInUse when in use); Adopt makes
// a finished download an image, its exact bytes chunked (maintain.go). The capacity bound
// evicts unreferenced chunks, then chunks of unused images, least recently read first, and
// chunks of images in use only if an origin has them. A cold image's boot profile is fetched
// ahead of the guest, started in its recorded order, a few chunks at a time (fill.go); it
// starts nothing while a guest read waits on a chunk it is not fetching itself. Background
// fill of a whole image — after its first use (FillRate), or asked for by nova's utime to now
// of an image no instance uses (Precache: nova's cache_image; it starts after PrecacheDelay if
// the image is still unused, as nova's spawn utimes a base too) or by Prefetch (PrefetchRate) —
// waits for the profiles and yields to every fetch a guest read waits on; one runs per image,
// a second request joins it, removal stops it, and it ends with its process (precache.go).
//
// Reads of cached chunks never wait on the fetch of another chunk (flights are per digest).
//
// # Images without a manifest yet
//
// An image can be read through a ChunkSource instead of a manifest (AddSource): its size is
// known, its chunks' digests only as they arrive. The cache reads it with the same ReadAt,
// counts it, keeps it in use and removes it like any image; the chunks the source gets come
// back through Admit (memory, local state, write-back). What the source trusts before its
// image has a digest is the source's promise to state (package cache/glanceimg: a raw Glance
// image read by range). Names other than digests (nova's) are kept by the layer above
// (Config.Names): removal forgets them, adoption records one.
//
// # Tiers and write-back
//
// Config.Origins are tiers asked in order after the local state (chunkstore/tier.Tiered, the
// one place that loop is written, with each origin's counters): typically the shared tier
// (an s3:// bucket every host reads, chunkstore.SharedTier) and then the origins behind it
// (dir://, http://, and Glance by range, last). A tier that answers not found, fails (an S3 tier in its
// cooldown answers at once) or serves wrong bytes is counted — misses, errors, corrupt, per
// origin, with a hit ratio — and the next one is asked; wrong bytes are never served. With
// Config.WriteBack, chunks and manifests fetched from behind the first shared tier are also
// written to it, asynchronously and put-if-absent (writeback.go), so the next host finds them
// there. Publish fills a tier (dir:// or s3://) ahead of time, manifest after chunks.
//
// An image completed through a ChunkSource is written back whole (WriteBackImage): the chunks
// the tier lacks, the manifest, then what the layer above records (Glance's basefs_manifest).
//
// # Writers of references and the collector
//
// One rule (chunkstore/local refs.go): whatever writes a chunk or finds one present and then
// writes a manifest naming it — an import, nova's adoption (Adopt, until its name is
// recorded), a completed ChunkSource — holds the shared side of the state's reference lock
// until that manifest is durable; cleanup, Remove and the capacity bound hold the exclusive
// side (after gcMu) from computing references to their last delete. It is a flock, so
// `basefs import` beside a daemon follows it too. A removal goes names first, then the
// manifest (its directory synced), then the chunks no other manifest names (their
// directories synced): a crash part way leaves the image whole or gone.
//
// Lock order: Manager.gcMu, then the reference lock; Cache.mu, then an lru's mu; no mutex is
// held across I/O, nor while a ChunkSource is called.
//
// List and Verify describe and re-hash what a local state holds (basefs ls, basefs verify).
package cache
