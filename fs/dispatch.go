package fs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The dispatcher: every request names a node id, and the id's kind answers it. One place
// decides the kind (node), in this order:
//
//   - 1 is the root directory (root.go);
//   - an id in the node table is a view of an image (image.go, view.go): the table is asked
//     first, so a writable file adopted as an image reads the image from then on;
//   - an id the writable area derives from one of its files is that file (file.go);
//   - any other id is unknown (unknown.go): handed out by a process serving other state, or
//     for an image removed since.
//
// Requests on a directory (lookup, create, readdir, …) go to the root; any other parent is
// not a directory. The kinds' code never asks the kind again.

// node is one kind's answers to the requests that name a node: the same operations as
// fuse.RawFileSystem's, for a node id the dispatcher has given this kind.
type node interface {
	getAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status
	setAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status
	getXAttr(h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status)
	listXAttr(h *fuse.InHeader, dest []byte) (uint32, fuse.Status)
	setXAttr(in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status
	removeXAttr(h *fuse.InHeader, attr string) fuse.Status
	open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status
	release(cancel <-chan struct{}, in *fuse.ReleaseIn)
	read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status)
	write(in *fuse.WriteIn, data []byte) (uint32, fuse.Status)
	fsync(in *fuse.FsyncIn) fuse.Status
	fallocate(in *fuse.FallocateIn) fuse.Status
	lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status
}

var (
	_ node = (*rootDir)(nil)
	_ node = (*imageNode)(nil)
	_ node = fileNode{}
	_ node = (*unknownNode)(nil)
)

// node returns the kind answering for node id: no allocation and, for an image, one read-
// locked look in the node table (the read path's only one).
func (f *FS) node(id uint64) node {
	if id == fuse.FUSE_ROOT_ID {
		return f.root
	}
	if n := f.images.nodes.get(id); n != nil {
		return n
	}
	if f.area != nil && f.area.files.isFile(id) {
		return fileNode{f.area.files}
	}
	return f.unknown
}

// dir returns the directory node id names: the root, the only one.
func (f *FS) dir(id uint64) (*rootDir, fuse.Status) {
	if id != fuse.FUSE_ROOT_ID {
		return nil, fuse.ENOTDIR
	}
	return f.root, fuse.OK
}

// Forget: node ids are deterministic and the table small; nothing to free.
func (f *FS) Forget(nodeid, nlookup uint64) {}

func (f *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer f.track("getattr")()
	return f.node(in.NodeId).getAttr(cancel, in, out)
}

func (f *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer f.track("setattr")()
	return f.node(in.NodeId).setAttr(cancel, in, out)
}

func (f *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer f.track("getxattr")()
	return f.node(h.NodeId).getXAttr(h, attr, dest)
}

func (f *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer f.track("listxattr")()
	return f.node(h.NodeId).listXAttr(h, dest)
}

func (f *FS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer f.track("setxattr")()
	return f.node(in.NodeId).setXAttr(in, attr, data)
}

func (f *FS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return f.node(h.NodeId).removeXAttr(h, attr)
}

func (f *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer f.track("open")()
	return f.node(in.NodeId).open(cancel, in, out)
}

// File handles say which kind opened them (fhImage, fhFile): a release goes to that kind
// even if the node changed kind meanwhile — a download adopted as an image while nova still
// held it open (the kernel sends RELEASE after close returns, so it can follow the rename).
// A handle of 0 was opened by an older process before a handover: its node decides.
const (
	fhImage = 1
	fhFile  = 2
)

func (f *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer f.track("release")()
	switch {
	case in.Fh == fhFile && f.area != nil:
		fileNode{f.area.files}.release(cancel, in)
	case in.Fh == fhImage:
		if n := f.images.nodes.get(in.NodeId); n != nil {
			n.release(cancel, in)
		}
	default:
		f.node(in.NodeId).release(cancel, in)
	}
}

// Read is the hot path: see imageNode.read for an image's.
func (f *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer f.track("read")()
	return f.node(in.NodeId).read(cancel, in, buf)
}

func (f *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer f.track("write")()
	return f.node(in.NodeId).write(in, data)
}

func (f *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer f.track("fsync")()
	return f.node(in.NodeId).fsync(in)
}

func (f *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

func (f *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer f.track("fallocate")()
	return f.node(in.NodeId).fallocate(in)
}

func (f *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer f.track("lseek")()
	return f.node(in.NodeId).lseek(cancel, in, out)
}

// StatFs answers for the whole mount: the writable area's file system, so nova's free-space
// checks see the real numbers.
func (f *FS) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer f.track("statfs")()
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	if f.area != nil {
		f.area.statFs(out)
	}
	return fuse.OK
}

// Requests on a directory: the root's.

func (f *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("lookup")()
	d, st := f.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	return d.lookup(cancel, h, name, out)
}

func (f *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer f.track("create")()
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.create(in, name, out)
}

func (f *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("mknod")()
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.mknod(in, name, out)
}

func (f *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.notRegular(name)
}

func (f *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	d, st := f.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	return d.notRegular(name)
}

func (f *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("link")()
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.link(in, name, out)
}

func (f *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer f.track("unlink")()
	d, st := f.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	return d.unlink(cancel, h, name)
}

// Rmdir: there are no directories below the root.
func (f *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.ENOTDIR
}

func (f *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer f.track("rename")()
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	if _, st := f.dir(in.Newdir); !st.Ok() {
		return st
	}
	return d.rename(cancel, in, oldName, newName)
}

func (f *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.openDir(in)
}

func (f *FS) ReleaseDir(in *fuse.ReleaseIn) {}

func (f *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer f.track("readdir")()
	d, st := f.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	return d.readDir(cancel, in, out)
}

// FsyncDir syncs the writable area's directory (the root's names).
func (f *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if f.area == nil {
		return fuse.OK
	}
	return fuse.Status(f.area.fsyncDir())
}
