package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// dpkg runs dpkg with args, waiting (up to 15 min) while another package manager holds the
// lock on this shared machine.
func dpkg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Minute); ; time.Sleep(2 * time.Second) {
		out, err := exec.Command("dpkg", args...).CombinedOutput()
		if err != nil && strings.Contains(string(out), "lock") && time.Now().Before(deadline) {
			continue
		}
		return string(out), err
	}
}

// An operator's upgrade: the old package is installed, its unit's ExecStart line (as written)
// mounts nova's _base, a real TCG guest reads its whole disk through it over and over (cache
// none: every read reaches the daemon), and `dpkg -i` of the newer package hands the FUSE
// connection to the new binary in postinst. The guest sees no error, status shows the new
// version. Then ExecReload and ExecStop as written; remove refuses while mounted, then keeps
// the configuration and the state; purge says what it removes and keeps nova's files.
func TestUpgradeUnderRunningGuest(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "dpkg", "systemd-escape")
	// One such test at a time on this machine: the package goes into /usr/bin.
	lock, err := os.OpenFile("/tmp/basefs-deb-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Nothing else may own /usr/bin/basefs; a package left by an interrupted run goes.
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "basefs").Output(); err == nil && strings.Contains(string(out), "installed") {
		dpkg(t, "--purge", "basefs")
	}
	if _, err := os.Stat("/usr/bin/basefs"); err == nil {
		t.Fatal("/usr/bin/basefs exists and is not from the basefs package: this test would replace it")
	}
	const state = "/var/lib/basefs"
	if ents, _ := os.ReadDir(state); len(ents) > 0 {
		t.Fatalf("%s holds data: this test's purge would remove it", state)
	}
	t.Cleanup(func() {
		dpkg(t, "--purge", "basefs")
		os.RemoveAll(state)
	})
	old, cur := buildDeb(t, "0.0.1+old"), buildDeb(t, "0.0.2+new")

	t0 := time.Now()
	if out, err := dpkg(t, "-i", old); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", old, err, out)
	}
	tInstall := time.Since(t0)
	unit := "/lib/systemd/system/basefs@.service"
	var instance string
	start := func(flags []string, mnt string) *exec.Cmd {
		esc, err := exec.Command("systemd-escape", "--path", mnt).Output()
		if err != nil {
			t.Fatal(err)
		}
		instance = strings.TrimSpace(string(esc))
		pre := execLine(unitLine(t, unit, "ExecStartPre", instance, mnt), nil)
		if out, err := pre.CombinedOutput(); err != nil {
			t.Fatalf("ExecStartPre: %v\n%s", err, out)
		}
		return execLine(unitLine(t, unit, "ExecStart", instance, mnt), map[string]string{"BASEFS_ARGS": strings.Join(flags, " ")})
	}
	e := agenttest.NewWithCommand(t, start, "--fill-rate", "0", "--memory-cache", "1048576")
	status := func() *control.Status {
		st, err := control.NewClient(control.SocketFromState(e.State)).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if v := status().Version; v != "0.0.1+old" {
		t.Fatalf("the unit's ExecStart serves version %q, want 0.0.1+old", v)
	}
	img := e.Import(26, 6<<20, 2<<20)
	id := e.ID("upgrade")
	e.Track(id)
	req := e.SpawnRequest(id, img, agent.GiB, img.Size, "m")
	req.Cmdline += " basefs.passes=400"
	res, err := e.Agent.Spawn(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST pass=2 ", 90*time.Second)

	// The upgrade, as an operator does it.
	pidBefore := status().PID
	t0 = time.Now()
	out, err := dpkg(t, "-i", cur)
	tUpgrade := time.Since(t0)
	if err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", cur, err, out)
	}
	if !strings.Contains(out, "restarted "+e.Mount) || !strings.Contains(out, "(0.0.2+new)") {
		t.Errorf("postinst did not say it handed %s to the new binary:\n%s", e.Mount, out)
	}
	st := status()
	if st.Version != "0.0.2+new" || st.PID == pidBefore {
		t.Fatalf("after dpkg -i the serving process is %d version %q (was %d)", st.PID, st.Version, pidBefore)
	}
	if out, err := exec.Command("basefs", "status", "--base", e.Mount).CombinedOutput(); err != nil || !strings.Contains(string(out), "version 0.0.2+new") {
		t.Fatalf("basefs status after the upgrade: %v\n%s", err, out)
	}
	passes := func() int {
		b, _ := os.ReadFile(res.Console)
		return len(regexp.MustCompile(`BASEFS-GUEST pass=\d+ `).FindAll(b, -1))
	}
	n := passes()
	agenttest.WaitConsole(t, res.Console, fmt.Sprintf("BASEFS-GUEST pass=%d ", n+2), 90*time.Second)

	// systemctl reload: ExecReload as written.
	reload := execLine(unitLine(t, unit, "ExecReload", instance, e.Mount), nil)
	if out, err := reload.CombinedOutput(); err != nil || status().PID == st.PID {
		t.Fatalf("ExecReload: %v\n%s", err, out)
	}
	n = passes()
	agenttest.WaitConsole(t, res.Console, fmt.Sprintf("BASEFS-GUEST pass=%d ", n+1), 90*time.Second)

	// Removing the package while it serves a guest is refused, and changes nothing.
	if out, err := dpkg(t, "-r", "basefs"); err == nil || !strings.Contains(out, "still serving") {
		t.Fatalf("dpkg -r while mounted: %v\n%s", err, out)
	}
	if _, err := os.Stat("/usr/bin/basefs"); err != nil {
		t.Fatalf("a refused remove removed the binary: %v", err)
	}

	// The guest: every pass it printed is right, none failed.
	log, _ := os.ReadFile(res.Console)
	if _, err := e.Agent.Terminate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("sha256=%s bytes=%d", img.SHA256, img.Size)
	all := regexp.MustCompile(`BASEFS-GUEST pass=\d+ (.*)`).FindAllStringSubmatch(string(log), -1)
	for _, p := range all {
		if strings.TrimSpace(p[1]) != want {
			t.Errorf("guest pass: %s", p[0])
		}
	}

	// systemctl stop: ExecStop as written unmounts.
	stop := execLine(unitLine(t, unit, "ExecStop", instance, e.Mount), nil)
	if out, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("ExecStop: %v\n%s", err, out)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(e.Mount, &sfs); err != nil || sfs.Type == 0x65735546 {
		t.Fatalf("after ExecStop %s is still a FUSE mount (%v)", e.Mount, err)
	}

	// Remove keeps the configuration and the state; purge says what it removes.
	os.MkdirAll(filepath.Join(state, "chunks"), 0o755)
	os.WriteFile(filepath.Join(state, "chunks", "c"), []byte("chunk"), 0o644)
	os.MkdirAll(filepath.Join(state, "base"), 0o755)
	os.WriteFile(filepath.Join(state, "base", "ephemeral_10_default"), []byte("nova's"), 0o644)
	if out, err := dpkg(t, "-r", "basefs"); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, out)
	}
	for _, p := range []string{"/etc/basefs/basefs.conf", filepath.Join(state, "chunks", "c"), filepath.Join(e.State, "chunks")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("remove removed %s: %v", p, err)
		}
	}
	if _, err := os.Stat("/usr/bin/basefs"); err == nil {
		t.Error("remove left /usr/bin/basefs")
	}
	out, err = dpkg(t, "--purge", "basefs")
	if err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, want := range []string{"removed /etc/basefs", "removing " + state + "/chunks", "kept " + state + "/base (nova's files)"} {
		if !strings.Contains(out, want) {
			t.Errorf("purge did not say %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "base", "ephemeral_10_default")); err != nil {
		t.Errorf("purge removed nova's file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "chunks")); err == nil {
		t.Error("purge left the chunks")
	}
	t.Logf("guest passes %d, all right; dpkg -i of the old package %.1fs, the upgrade (dpkg -i with the handover) %.1fs", len(all), tInstall.Seconds(), tUpgrade.Seconds())
}
