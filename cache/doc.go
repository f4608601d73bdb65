// Package cache owns a host's local state and the read path over it.
//
// Cache.Chunk returns a verified chunk: from a bounded in-memory cache of chunks verified since
// they were last read from disk or network; else from the local state, hashed as it is read;
// else fetched from the origins in order, once however many readers wait (singleflight keyed
// by digest), verified, stored atomically, and served. A local chunk that fails verification
// is moved to <state>/quarantine, counted and logged, then fetched again; if no origin gives
// good bytes the read fails — wrong bytes are never returned. Wrong bytes from an origin are
// counted per origin, apart from local corruption.
//
// Image.ReadAt maps an image offset to chunks: holes read as zeros with no I/O.
//
// Lock order: Cache.mu, then an lru's mu. No lock is held across I/O; reads of cached chunks
// never wait on the fetch of another chunk (flights are per digest).
//
// List and Verify describe and re-hash what a local state holds (basefs ls, basefs verify).
package cache
