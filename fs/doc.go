// Package fs is the `_base` FUSE tree (github.com/hanwen/go-fuse/v2): names → views,
// reads → cache. Nothing about fetching or hashing lives here.
//
// The mount is one flat directory, as nova's `_base` is. Image names (ParseName, IsImageName):
//   - `<digest>` is an image, exactly its size, mode 0440, owned by Config.Access's owner and
//     group (access.go: only root, the owner and the group may list, look up or read; the
//     kernel checks the modes — default_permissions — and the daemon checks the caller again);
//   - `<digest>_<N>` is a resized view: the image followed by zeros up to N GiB (nova's name
//     for a resized base); it exists on lookup without being created, and N GiB smaller than
//     the image does not exist; one image has at most MaxViews of them (EMLINK past it);
//   - `<sha1>` and `<sha1>_<N>`, nova's names (the hex SHA-1 of a Glance image id, or of an
//     adopted download), resolve through a ContextResolver (the cache's alias table and
//     Glance catalog) to the same image and inode as `<digest>`.
//
// On image names nova's metadata operations go to the Maintainer (the cache manager): utime
// records the image's last use, shown as mtime; unlink removes the image now, EBUSY while it
// is in use; st_blocks counts the bytes held locally. Writes, truncate, chmod and chown answer
// EROFS (libvirt's DAC driver tolerates EROFS, not EACCES); setxattr ENOTSUP.
//
// Every other name is the writable area (area.go, file.go, files.go): a plain local file in
// Config.Files, with every operation nova, qemu and mkfs use, each name one component resolved
// beneath the area's directory descriptor without following links (beneath.go). Its node ids come from the
// backing file's handle, so any process serving the state derives them; a file unlinked while
// open lives in the orphan directory until its last release; requests that are not idempotent
// (create, rename, unlink, link) are journaled by request id, so a request resent after a crash
// is not applied twice (journal.go). Renaming a plain file to an image name adopts it (Adopt):
// chunked, recorded under that name, served verified from then on. A nova name no image has
// may also be written directly (nova's fetch_raw_image of a kernel or ramdisk): it is then a
// plain file under that name, and shadows an image of that name until removed.
//
// readdir lists the images whose manifests the host has (not views), their nova names and the
// plain files. Image files are opened with FOPEN_KEEP_CACHE — images are immutable, and only
// verified bytes enter the kernel's page cache — or with direct I/O for O_DIRECT opens.
//
// FS implements go-fuse's raw protocol API (fuse.RawFileSystem), not its node tree, so that
// node ids are basefs's own: the inode number of a view is derived from its image digest and
// size, the same in every process, and recorded in the node table (optionally logged to a file
// before the kernel learns it). File handles carry nothing (fh 0). Any process serving the
// same state can therefore answer for every node id the kernel holds — which is what lets the
// supervisor in cmd/basefs hand a live FUSE connection to a new serving process.
//
// The shape is go-fuse's own fs API, one type per node kind, behind one dispatcher
// (dispatch.go) that decides a request's kind once, from its node id: rootDir (root.go,
// dir.go; directory requests send each name to the image tree or the writable area),
// imageNode (view.go; one per node-table entry, made by imageTree in image.go), fileNode
// (file.go; the writable area's namespace is area.go, its table files.go), unknownNode
// (unknown.go). No kind's code asks the kind again; adopt.go is the one operation across two.
//
// The root's extended attributes: user.basefs.control names the daemon's control socket,
// user.basefs.supervisor the pid of the supervisor holding the connection.
//
// Mount serves a file system in-process (tests, benchmarks); the daemon serves it on the
// connection the supervisor holds, attached by package fs/handover (or through fs/relay on a
// kernel without resend). Idle tells a serving process handing over when nothing is in flight.
package fs
