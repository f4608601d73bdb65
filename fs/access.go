package fs

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Access is who may use the mount besides root: Uid owns the root directory and the images
// (nova-compute's user: its utime of a base image needs ownership), Gid is the group that may
// read them (the hypervisor's: qemu runs as libvirt-qemu in group kvm). Every other local user
// may not list the mount, look a name up (which may fetch or convert a Glance image) or read
// an image.
//
// Two lines hold it. The kernel: the mount has default_permissions, the root is rootMode
// (owner rwx, group r-x) and images imageMode (owner and group read), so the kernel refuses
// other users' path walks, listings and opens itself, with their full credentials
// (supplementary groups included), before basefs sees a request. basefs: the requests that
// cost (lookups, listings, opens, creations) are answered only for a caller that is root, the
// owner, has the group as its primary group, or lists it among the supplementary groups of
// /proc/<pid>/status (FUSE passes only the caller's uid, gid and pid; a caller in another pid
// namespace has pid 0 and is judged on uid and gid alone). Refused requests get EACCES.
type Access struct {
	Uid, Gid uint32
}

// Modes of the root directory and of the images: the owner and the group, nobody else.
const (
	rootMode  = 0o750
	imageMode = 0o440
)

func (a Access) owner() fuse.Owner { return fuse.Owner{Uid: a.Uid, Gid: a.Gid} }

// allows reports whether caller c may use the mount (see Access).
func (a Access) allows(c *fuse.Caller) bool {
	if c.Uid == 0 || c.Uid == a.Uid || c.Gid == a.Gid {
		return true
	}
	return c.Pid != 0 && inGroup(c.Pid, c.Uid, a.Gid)
}

// maxStatus bounds what is read of /proc/<pid>/status (a Groups line of 65536 groups is
// ~460 KiB; a caller with more than fit is judged on the groups read).
const maxStatus = 512 << 10

// inGroup reports whether process pid, running as uid (its filesystem uid: a pid reused by
// someone else does not pass), has gid among its groups.
func inGroup(pid, uid, gid uint32) bool {
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxStatus))
	sc.Buffer(make([]byte, 0, 4096), maxStatus)
	uidOK, want := false, []byte(strconv.FormatUint(uint64(gid), 10))
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			// real, effective, saved, filesystem: FUSE passes the filesystem uid.
			fields := bytes.Fields(line[4:])
			uidOK = len(fields) == 4 && string(fields[3]) == strconv.FormatUint(uint64(uid), 10)
		case bytes.HasPrefix(line, []byte("Groups:")):
			if !uidOK {
				return false
			}
			for _, g := range bytes.Fields(line[7:]) {
				if bytes.Equal(g, want) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// deny answers whether h's caller is refused (logged once per request; the kernel has usually
// refused it already, so one reaching here is worth a line).
func (c *Config) deny(h *fuse.InHeader, op string) bool {
	if c.Access.allows(&h.Caller) {
		return false
	}
	c.Logger.Warn("request refused: the caller is not root, the owner or in the group", "op", op,
		"uid", h.Caller.Uid, "gid", h.Caller.Gid, "pid", h.Caller.Pid, "owner", c.Access.Uid, "group", c.Access.Gid)
	return true
}
