// Package agent is the instance lifecycle on one compute host — nova's libvirt spawn path on
// top of basefs: it resolves an image through the basefs daemon, picks the view for the disk
// size, creates the instance's qcow2 overlay on that view, builds the domain XML with
// libvirtxml and defines, starts, destroys and undefines domains through libvirt. It sees
// images only as digests and paths in the mount; it talks to the daemon only through its
// control socket (daemon/control), found from the mount point alone (the mount root's
// user.basefs.control attribute).
//
// # Layout (nova's)
//
//	<instances-path>/                 default /var/lib/basefs/instances (nova: /var/lib/nova/instances)
//	  _base/                          the basefs mount (default; --base may point elsewhere)
//	    <digest>                      an image
//	    <digest>_<N>                  the image zero-extended to N GiB
//	  <ID>/disk                       qcow2 overlay, backing file <base>/<view>, backing format raw
//	  <ID>/libvirt.xml                the domain definition the agent defined
//	  <ID>/console.log                the serial console (<serial type='file'>)
//
// The view is the image itself when the disk size equals the image size, else `<digest>_<N>`
// with N the disk size in GiB rounded up (PickView). The domain is `basefs-<ID>`; IDs are
// 1-63 characters of [A-Za-z0-9._-] starting with a letter or digit (ValidateID), so an ID
// is one plain path element and never `_base`.
//
// # Domains
//
// The disk is virtio, driver qcow2 with the cache mode asked for (default none: qemu then
// opens the view with O_DIRECT, which the mount accepts). Its backing store is given in full —
// `<backingStore type='file'><format type='raw'/><source file=VIEW><seclabel model='dac'
// relabel='no'/></source><backingStore/></backingStore>` — so libvirt neither probes the
// chain nor chowns the read-only mount's files (an EACCES there would fail the start).
// on_poweroff is destroy: a guest that powers off stays defined, shut off, until terminate.
// Without a kernel the guest boots from its disk (BIOS); with one, by direct kernel boot.
// The domain type is the virt type (nova's [libvirt] virt_type: kvm, or qemu for TCG).
//
// # What the agent records, and where in-use images are found
//
// The agent keeps no registry of its own. Each domain carries, in its <metadata>, an
// <instance xmlns="https://basefs.dev/agent/1"> element (Metadata: ID, image digest and size,
// view, mount, instance directory, disk size, creation time); <ID>/libvirt.xml holds the same.
// list, show and terminate read libvirt (and, for a directory without a domain, libvirt.xml).
//
// The cache manager finds which images are in use the way nova's image cache manager does:
// InUseImages reads the backing file of every <instances-path>/*/disk with `qemu-img info -U`
// and maps its name (a view) to its image. This counts every overlay on the host, whatever
// made it and whether its domain runs, is shut off or is gone. It fails if any disk cannot be
// read, so a caller removes nothing it cannot prove unused. A spawn makes the image known to
// the daemon (EnsureImage) before its overlay exists: the cache manager must keep a minimum
// age after an image's last use (nova's remove_unused_original_minimum_age_seconds) so an
// image is never removed between the two.
//
// # Invariants
//
//   - Nothing changes before every check that needs no change has passed: ID, sizes, virt
//     type, cache mode, kernel and initrd files present inside Config.KernelDirs (links
//     resolved first), the daemon reachable through the mount, the image known, the disk at
//     least the image's size, the view served at the right size, libvirt reachable, no domain
//     of that name.
//   - The first change is the exclusive creation (mkdir) of <ID>/. It is also the lock: of two
//     spawns of one ID the second fails with ErrExists and touches nothing of the first.
//     libvirt refusing a second domain of the same name backs it up.
//   - Any failure after the first change rolls back everything done so far: the domain is
//     destroyed and undefined if this spawn defined it, and <ID>/ is removed. No domain, no
//     directory, no overlay is left.
//   - Spawn returns when libvirt reports the domain running (or already powered off by
//     itself: fast guests do).
//   - Terminate destroys (if active) and undefines `basefs-<ID>` and removes <ID>/ under the
//     instances path only (a directory the domain's metadata names elsewhere is left); the base
//     stays. An instance that does not exist is success, with a message (orchestrators retry).
//   - Concurrent operations on different IDs are independent (each opens its own libvirt
//     connection). A terminate racing a spawn of the same ID is not serialised; the spawn
//     then fails (its directory, domain or process is gone) and rolls back.
//
// The agent holds no locks in memory; the instance directory is the only lock.
package agent
