package fs

import (
	"context"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/fs/names"
)

// rootDir is the root directory, node 1, the mount's only directory (nova's `_base` is flat).
// Its names belong to two namespaces, told apart by the name alone (plain): image names go to
// the image tree (image.go), every other name — and a nova name written directly — to the
// writable area (area.go). A rename from the second to the first is an adoption (adopt.go).
//
// As a node it is read-only with two extended attributes (the control socket, the
// supervisor's pid); the file operations the kernel never sends to a directory answer as for
// an unknown id.
type rootDir struct {
	unknownNode
	images  *imageTree
	area    *area // nil: no writable area
	kernel  *kernel
	started time.Time // the root's times
}

func (r *rootDir) getAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	a := &out.Attr
	a.Ino = fuse.FUSE_ROOT_ID
	a.Mode = fuse.S_IFDIR | rootMode
	if r.area == nil {
		a.Mode &^= 0o200 // nothing can be created
	}
	a.Nlink = 2
	a.Owner = r.cfg.Access.owner()
	a.SetTimes(&r.started, &r.started, &r.started)
	out.SetTimeout(attrTimeout)
	return fuse.OK
}

func (r *rootDir) setAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return fuse.EPERM
}

// getXAttr answers names.ControlXattr (the daemon's control socket) and names.SupervisorXattr.
func (r *rootDir) getXAttr(h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	v := ""
	switch attr {
	case names.ControlXattr:
		v = r.cfg.ControlSocket
	case names.SupervisorXattr:
		if r.cfg.Supervisor != nil {
			if pid := r.cfg.Supervisor(); pid > 0 {
				v = strconv.Itoa(pid)
			}
		}
	}
	if v == "" {
		return 0, fuse.Status(syscall.ENODATA)
	}
	if len(dest) == 0 {
		return uint32(len(v)), fuse.OK
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// plain reports whether name is a plain file's name in the writable area, the one place that
// decides it: every name outside the images' namespace, and a nova name whose plain file exists
// (written directly, as nova does for kernels; it takes precedence over an image of that name).
func (r *rootDir) plain(name string) bool { return r.area != nil && r.area.plain(name) }

// creatable checks that name may be created in the writable area.
func (r *rootDir) creatable(name string) fuse.Status {
	if r.area == nil {
		return fuse.Status(syscall.EROFS)
	}
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	if !validName(name) {
		return fuse.EINVAL
	}
	if IsImageName(name) {
		// Image names are content: they come from origins or from adoption (rename). A nova
		// name no image has may be written directly, as nova does for kernels and ramdisks
		// (fetch_raw_image): it is then a plain file, as in nova's own _base.
		n, _ := ParseName(name)
		if !n.IsNova() || n.ViewGiB != 0 {
			return fuse.Status(syscall.EROFS)
		}
		if _, ok, err := r.images.resolve(context.Background(), n.Ref); ok || err != nil && !chunkstore.IsNotFound(err) {
			return fuse.Status(syscall.EROFS)
		}
	}
	return fuse.OK
}

// lookup maps a name to a plain file or an image's view (`<ref>` or `<ref>_<N>`; the image's
// manifest is fetched from the origins if the host does not have it yet).
func (r *rootDir) lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if r.cfg.deny(h, "lookup") {
		return fuse.EACCES // before anything is resolved, fetched or allocated
	}
	if r.plain(name) {
		return r.area.lookup(name, out)
	}
	return r.images.lookup(ctxOf(cancel), name, out)
}

func (r *rootDir) create(in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if r.cfg.deny(&in.InHeader, "create") {
		return fuse.EACCES
	}
	if st := r.creatable(name); !st.Ok() {
		return st
	}
	return r.area.create(in, name, out)
}

func (r *rootDir) mknod(in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if r.cfg.deny(&in.InHeader, "mknod") {
		return fuse.EACCES
	}
	if st := r.creatable(name); !st.Ok() {
		return st
	}
	return r.area.mknod(in, name, out)
}

// notRegular answers mkdir and symlink: the name is checked as for a create, then refused
// (EPERM): the area holds regular files, and `_base` is flat, as nova keeps it.
func (r *rootDir) notRegular(name string) fuse.Status {
	if st := r.creatable(name); !st.Ok() {
		return st
	}
	return fuse.EPERM
}

func (r *rootDir) link(in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := r.creatable(name); !st.Ok() {
		return st
	}
	return r.area.link(in, name, out)
}

// unlink removes a plain file, or an image (image.go).
func (r *rootDir) unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if r.plain(name) {
		return r.area.unlink(h, name)
	}
	if !IsImageName(name) {
		return fuse.Status(syscall.EROFS) // no writable area
	}
	return r.images.unlink(ctxOf(cancel), h, name)
}

// rename renames plain files; to an image name, it adopts the file as that image. Images
// keep their names.
func (r *rootDir) rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if !r.plain(oldName) {
		return fuse.Status(syscall.EROFS)
	}
	if !IsImageName(newName) {
		return r.area.rename(in, oldName, newName)
	}
	return r.adopt(cancel, in, oldName, newName)
}

func (r *rootDir) openDir(in *fuse.OpenIn) fuse.Status {
	if r.cfg.deny(&in.InHeader, "opendir") {
		return fuse.EACCES
	}
	return fuse.OK
}
