package testenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// User is a real, unprivileged local user a test made (useradd) and removes when it ends:
// the attacker of the tests of who may use a mount or a socket.
type User struct {
	Name     string
	Uid, Gid uint32
}

// NewUser creates a system user with a group of its own, no home and no password, removed
// (userdel) when t ends. It needs root and useradd (package passwd, on every Debian).
func NewUser(t testing.TB) *User {
	t.Helper()
	NeedRoot(t)
	NeedBinary(t, "useradd", "userdel")
	name := fmt.Sprintf("basefs-t%06d", rand.IntN(1000000))
	if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &User{Name: name, Uid: uint32(uid), Gid: uint32(gid)}
}

// Command returns cmd name args run as u (its uid, its group, no supplementary groups), with
// groups added as supplementary groups.
func (u *User) Command(groups []uint32, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.Uid, Gid: u.Gid, Groups: groups}}
	return c
}

// Reach makes every directory from dir up to the file system's root searchable by everyone
// (t.TempDir's are 0700), so that what keeps a user out is what the test is about.
func Reach(t testing.TB, dir string) {
	t.Helper()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
		if d == filepath.Dir(d) {
			return
		}
	}
}
