package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// TestControlSocketPeers: the control socket is the owner's, mode 0600; another local user
// cannot connect, and if the mode were loosened its requests would still be refused
// (SO_PEERCRED), while the owner's and root's are answered.
func TestControlSocketPeers(t *testing.T) {
	owner, other := testenv.NewUser(t), testenv.NewUser(t)
	dir := t.TempDir()
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--owner", owner.Name)
	testenv.Reach(t, filepath.Dir(basefsBin))
	testenv.Reach(t, d.state)
	sock := control.SocketFromState(d.state)
	var st syscall.Stat_t
	if err := syscall.Lstat(sock, &st); err != nil || st.Mode&0o777 != 0o600 || st.Uid != owner.Uid {
		t.Fatalf("control socket: mode %o uid %d (%v); want 0600, uid %d", st.Mode&0o777, st.Uid, err, owner.Uid)
	}
	status := func(u *testenv.User) (string, error) {
		out, err := u.Command(nil, basefsBin, "status", "--state", d.state).CombinedOutput()
		return string(out), err
	}
	if out, err := status(other); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("status by another user: %v %s; want permission denied", err, out)
	}
	if out, err := status(owner); err != nil || !strings.Contains(out, "mount "+d.mnt) {
		t.Errorf("status by the owner: %v %s", err, out)
	}
	os.Chmod(sock, 0o666) // as if someone loosened it: the peer check still holds
	for _, cmd := range []string{"status", "gc"} {
		out, err := other.Command(nil, basefsBin, cmd, "--state", d.state).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "may not use it") {
			t.Errorf("%s by another user through a loosened socket: %v %s; want refused", cmd, err, out)
		}
	}
	if _, stderr, code := basefs(t, "status", "--state", d.state); code != 0 {
		t.Errorf("status by root: %s", stderr)
	}
}

// TestRestartSignalsOnlyItsSupervisor: `basefs restart` signals the pid the mount names only
// if it is the basefs supervisor of that mount, running as root.
func TestRestartSignalsOnlyItsSupervisor(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"))
	if err := checkSupervisor(d.mnt, d.cmd.Process.Pid); err != nil {
		t.Fatalf("the real supervisor: %v", err)
	}
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	if err := checkSupervisor(d.mnt, victim.Process.Pid); err == nil {
		t.Errorf("sleep %d accepted as the supervisor", victim.Process.Pid)
	}
	other := filepath.Join(dir, "tmpfs")
	os.Mkdir(other, 0o755)
	if err := unix.Mount("t24", other, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(other, unix.MNT_DETACH)
	if err := checkSupervisor(other, d.cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), "tmpfs") {
		t.Errorf("a tmpfs accepted as a basefs mount: %v", err)
	}
	if err := checkSupervisor(filepath.Join(dir, "state"), d.cmd.Process.Pid); err == nil {
		t.Errorf("a directory that is no mount accepted")
	}
	// The supervisor of another mount is not this mount's.
	if err := checkSupervisor(d.mnt+"x", d.cmd.Process.Pid); err == nil {
		t.Errorf("another path accepted")
	}
}

// TestCredentialsInURLsRefused: an origin or Glance endpoint with user:password@ is refused
// before anything is mounted, and the password is printed nowhere.
func TestCredentialsInURLsRefused(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	for _, args := range [][]string{
		{"--glance-endpoint", "http://admin:s3cr3t@127.0.0.1:9292"},
		{"--origin", "http://admin:s3cr3t@127.0.0.1:1/pub"},
		{"--origin", "dir://admin:s3cr3t@/tmp"},
		{"--origin", "http://admin:s3cr3t@127.0.0.1:bad%zz/pub"},
	} {
		out, errOut, code := basefs(t, append(append([]string{"mount", "--state", filepath.Join(dir, "state")}, args...), mnt)...)
		if code == 0 || strings.Contains(out+errOut, "s3cr3t") || errOut == "" {
			t.Errorf("mount %v: exit %d, %q %q; want refused without the password", args, code, out, errOut)
		}
	}
	if m, _, _ := mountOf(mnt); m != "" {
		t.Errorf("something was mounted")
	}
}
