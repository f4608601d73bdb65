package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/chunkstore"
)

// TestNodeIDs: node ids are the same in every process serving the same state — a view's is
// derived from its image's digest and size (the values below are what every release has
// handed the kernel: another derivation would strand the inodes a live mount holds across a
// handover), a writable file's from its backing file's handle — and a process started on the
// same node log and writable area answers for ids it never looked up, each by its kind.
func TestNodeIDs(t *testing.T) {
	d := chunkstore.Sum([]byte("basefs"))
	if got := inodeNumber(d, 0); got != 4940724047366358458 {
		t.Errorf("inode number of an image: %d, the kernel holds 4940724047366358458", got)
	}
	if got := inodeNumber(d, 3); got != 13762740532213790602 {
		t.Errorf("inode number of a resized view: %d, the kernel holds 13762740532213790602", got)
	}

	e := newEnv(t, envOptions{})
	img, _ := e.importImage(1<<20, 5, [2]int64{0, 1 << 20})
	dir := t.TempDir()
	cfg := Config{Images: e.cache, NodeLog: filepath.Join(dir, "nodes"), Files: filepath.Join(dir, "base")}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}
	var view fuse.EntryOut
	if st := first.Lookup(nil, &root, img.String()+"_2", &view); !st.Ok() || view.NodeId != inodeNumber(img, 2) {
		t.Fatalf("lookup of a view: %v, node %d; want %d", st, view.NodeId, inodeNumber(img, 2))
	}
	var file fuse.CreateOut
	create := fuse.CreateIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID, Unique: 1}, Flags: uint32(os.O_RDWR | os.O_CREATE), Mode: 0o644}
	if st := first.Create(nil, &create, "disk.local", &file); !st.Ok() || file.NodeId&fileNodeBit == 0 {
		t.Fatalf("create: %v, node %x", st, file.NodeId)
	}
	first.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: file.NodeId}})

	second, err := New(cfg) // a process taking over: it has looked nothing up
	if err != nil {
		t.Fatal(err)
	}
	const stranger = 12345
	for _, f := range []*FS{first, second} {
		for id, want := range map[uint64]string{
			fuse.FUSE_ROOT_ID: "*fs.rootDir", view.NodeId: "*fs.imageNode", file.NodeId: "fs.fileNode", stranger: "*fs.unknownNode",
		} {
			if got := fmt.Sprintf("%T", f.node(id)); got != want {
				t.Errorf("node %d is a %s, want %s", id, got, want)
			}
		}
	}
	var a fuse.AttrOut
	if st := second.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: view.NodeId}}, &a); !st.Ok() || a.Ino != view.NodeId || a.Size != 2*GiB {
		t.Errorf("getattr of the view in the second process: %v, ino %d, size %d", st, a.Ino, a.Size)
	}
	if st := second.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: file.NodeId}}, &a); !st.Ok() || a.Ino != file.NodeId || a.Mode&0o777 != 0o644 {
		t.Errorf("getattr of the file in the second process: %v, ino %d, mode %o", st, a.Ino, a.Mode)
	}
	if st := second.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: stranger}}, &a); st != fuse.ENOENT {
		t.Errorf("getattr of an unknown node: %v, want ENOENT", st)
	}
	if _, st := second.Write(nil, &fuse.WriteIn{InHeader: fuse.InHeader{NodeId: view.NodeId}}, []byte("x")); st != fuse.Status(syscall.EROFS) {
		t.Errorf("write to the view: %v, want EROFS", st)
	}
	if k, st := second.Write(nil, &fuse.WriteIn{InHeader: fuse.InHeader{NodeId: file.NodeId}}, []byte("x")); !st.Ok() || k != 1 {
		t.Errorf("write to the file: %v, %d bytes", st, k)
	}
}
