// Package fs is the `_base` FUSE tree (github.com/hanwen/go-fuse/v2): names → views,
// reads → cache. Nothing about fetching or hashing lives here.
//
// The mount is one flat, read-only directory, as nova's `_base` is:
//   - `<digest>` is an image, exactly its size, mode 0444;
//   - `<digest>_<N>` is a resized view: the image followed by zeros up to N GiB (nova's name
//     for a resized base); it exists on lookup without being created, and N GiB smaller than
//     the image does not exist;
//   - readdir lists the images whose manifests the host has (not the views);
//   - `<sha1>` and `<sha1>_<N>`, nova's names for a Glance image (the hex SHA-1 of its id),
//     resolve through a ContextResolver (the cache's alias table) to the same image and inode
//     as `<digest>`; readdir lists them too (AliasLister). A Glance image still without a
//     digest (provisional) is served under its sha1 name only, with direct I/O;
//   - every other name is ENOENT (ParseName; a Resolver may add aliases for image refs).
//
// Writes, create, truncate and chown are refused with EROFS (the mount is also `ro`). Files
// are opened with FOPEN_KEEP_CACHE — images are immutable, and only verified bytes enter the
// kernel's page cache — or with direct I/O for O_DIRECT opens (qemu's cache='none').
//
// FS implements go-fuse's raw protocol API (fuse.RawFileSystem), not its node tree, so that
// node ids are basefs's own: the inode number of a view is derived from its image digest and
// size, the same in every process, and recorded in the node table (optionally logged to a file
// before the kernel learns it). File handles carry nothing (fh 0). Any process serving the
// same state can therefore answer for every node id the kernel holds — which is what lets the
// supervisor in cmd/basefs hand a live FUSE connection to a new serving process.
//
// The root's extended attributes: user.basefs.control names the daemon's control socket,
// user.basefs.supervisor the pid of the supervisor holding the connection.
//
// Mount serves a file system in-process (tests, benchmarks); the daemon serves it on a
// connection the supervisor relays (fuse.NewServer on /dev/fd/N).
package fs
