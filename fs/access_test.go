package fs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestLocalUsers: on a real mount, a local user who is neither root, the owner nor in the
// group cannot list the mount, read an image, make the daemon fetch one by looking its name
// up, or look up resized views; the owner, a member of the group by its primary group and
// one by a supplementary group can read.
func TestLocalUsers(t *testing.T) {
	owner, hyper, other := testenv.NewUser(t), testenv.NewUser(t), testenv.NewUser(t)
	e := newEnv(t, envOptions{writable: true, access: Access{Uid: owner.Uid, Gid: hyper.Gid}})
	testenv.Reach(t, filepath.Dir(e.mnt))
	local, _ := e.importImage(3<<20, 1, [2]int64{0, 3 << 20})
	if _, err := os.ReadFile(e.path(local.String())); err != nil { // now local
		t.Fatal(err)
	}
	remote, _ := e.importImage(2<<20, 2, [2]int64{0, 2 << 20}) // only the origin has it
	fetches := e.cache.Stats().ManifestFetches

	as := func(u *testenv.User, groups []uint32, args ...string) (string, error) {
		out, err := u.Command(groups, args[0], args[1:]...).CombinedOutput()
		return string(out), err
	}
	// The attacker.
	if out, err := as(other, nil, "ls", e.mnt); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("ls of the mount by another user: %v %s; want Permission denied", err, out)
	}
	for _, name := range []string{local.String(), remote.String(), local.String() + "_1", remote.String() + "_7"} {
		if out, err := as(other, nil, "head", "-c", "1", e.path(name)); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("cat %s by another user: %v %.80s; want Permission denied", name, err, out)
		}
	}
	if got := e.cache.Stats().ManifestFetches; got != fetches {
		t.Errorf("another user's lookups fetched %d manifests", got-fetches)
	}
	if _, err := e.state.GetManifest(t.Context(), remote); !chunkstore.IsNotFound(err) {
		t.Errorf("another user's lookup of %s made it local (%v)", remote.Short(), err)
	}
	// Those allowed: the owner, the group (primary), the group (supplementary), root.
	for _, c := range []struct {
		who    string
		u      *testenv.User
		groups []uint32
	}{{"owner", owner, nil}, {"group member", hyper, nil}, {"supplementary member", other, []uint32{hyper.Gid}}} {
		if out, err := as(c.u, c.groups, "sha256sum", e.path(local.String())); err != nil {
			t.Errorf("%s cannot read: %v %s", c.who, err, out)
		}
		if out, err := as(c.u, c.groups, "head", "-c", "4096", e.path(remote.String()+"_1")); err != nil || len(out) != 4096 {
			t.Errorf("%s cannot read: %v %s", c.who, err, out)
		}
		if out, err := as(c.u, c.groups, "ls", e.mnt); err != nil || !strings.Contains(out, local.String()) {
			t.Errorf("%s cannot list: %v %s", c.who, err, out)
		}
	}
	fi, err := os.Stat(e.path(local.String()))
	if err != nil || fi.Mode().Perm() != 0o440 || fi.Sys().(*syscall.Stat_t).Uid != owner.Uid || fi.Sys().(*syscall.Stat_t).Gid != hyper.Gid {
		t.Errorf("image: %v %v; want 0440 owned by %d:%d", fi.Mode(), err, owner.Uid, hyper.Gid)
	}
	if fi, err := os.Stat(e.mnt); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("root: %v %v; want 0750", fi.Mode(), err)
	}
}

// TestDaemonRefusesOtherCallers: the daemon's own check, behind the kernel's (which refuses
// such callers before a request is sent): a lookup, listing or open from a caller that is not
// root, the owner or in the group gets EACCES and allocates nothing.
func TestDaemonRefusesOtherCallers(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, _ := e.importImage(1<<20, 3, [2]int64{0, 1 << 20})
	f, err := New(Config{Images: e.cache, Access: Access{Uid: 1000, Gid: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	stranger := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID, Caller: fuse.Caller{Owner: fuse.Owner{Uid: 4242, Gid: 4242}, Pid: uint32(os.Getpid())}}
	var out fuse.EntryOut
	for _, name := range []string{d.String(), d.String() + "_3"} {
		if st := f.Lookup(nil, &stranger, name, &out); st != fuse.EACCES {
			t.Errorf("lookup %s by a stranger: %v, want EACCES", name, st)
		}
	}
	if n := len(f.images.nodes.m); n != 0 {
		t.Errorf("a stranger's lookups left %d nodes", n)
	}
	if st := f.ReadDir(nil, &fuse.ReadIn{InHeader: stranger}, nil); st != fuse.EACCES {
		t.Errorf("readdir by a stranger: %v", st)
	}
	// Unknown names allocate nothing either, whoever asks.
	root := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}
	for i := range 100 {
		name := chunkstore.Sum([]byte{byte(i)}).String()
		if i%2 == 1 {
			name += "_" + strconv.Itoa(i)
		}
		if st := f.Lookup(nil, &root, name, &out); st != fuse.ENOENT {
			t.Fatalf("lookup of unknown %s: %v", name, st)
		}
	}
	if n := len(f.images.nodes.m); n != 0 {
		t.Errorf("lookups of unknown names left %d nodes", n)
	}
	for _, c := range []fuse.Caller{{Owner: fuse.Owner{Uid: 1000, Gid: 5}}, {Owner: fuse.Owner{Uid: 5, Gid: 1000}}, {Owner: fuse.Owner{Uid: 0, Gid: 5}}} {
		h := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID, Caller: c}
		if st := f.Lookup(nil, &h, d.String(), &out); st != fuse.OK {
			t.Errorf("lookup by %+v: %v", c, st)
		}
	}
}
