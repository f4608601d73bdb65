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
// Inode numbers are derived from image digest and view size, the same in every process.
// The root's extended attribute user.basefs.control names the daemon's control socket.
package fs
