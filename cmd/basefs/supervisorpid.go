package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// checkSupervisor verifies that pid — read from the mount's root, so whatever serves mnt
// chose it — is the basefs supervisor of mnt before `basefs restart` signals it: mnt is a
// basefs mount made by root (a user's FUSE mount can name any pid), and pid is a process
// running as root whose command line is `basefs mount … mnt`.
func checkSupervisor(mnt string, pid int) error {
	fstype, opts, err := mountOf(mnt)
	if err != nil {
		return err
	}
	if fstype != "fuse.basefs" || !hasOption(opts, "user_id=0") {
		return fmt.Errorf("%s is a %s mount (%s), not one basefs made as root: nothing signalled", mnt, fstype, opts)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("%s names supervisor %d: %w", mnt, pid, err)
	}
	if uid := statusField(status, "Uid:"); len(uid) == 0 || uid[0] != "0" {
		return fmt.Errorf("%s names supervisor %d, which does not run as root (uid %v): nothing signalled", mnt, pid, uid)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("%s names supervisor %d: %w", mnt, pid, err)
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	served := ""
	if len(args) >= 3 {
		if served = args[len(args)-1]; !filepath.IsAbs(served) {
			cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			served = filepath.Join(cwd, served)
		}
	}
	if len(args) < 3 || args[1] != "mount" || filepath.Clean(served) != mnt || !strings.HasPrefix(filepath.Base(args[0]), "basefs") {
		return fmt.Errorf("%s names supervisor %d, which is not `basefs mount … %s` (%q): nothing signalled", mnt, pid, mnt, args)
	}
	return nil
}

// mountOf returns the file system type and super options of the mount at mnt (the last
// one mounted there), from /proc/self/mountinfo.
func mountOf(mnt string) (fstype, opts string, err error) {
	ms, err := mountTable()
	if err != nil {
		return "", "", err
	}
	found := false
	for _, m := range ms {
		if m.point == mnt {
			fstype, opts, found = m.fstype, m.opts, true
		}
	}
	if !found {
		return "", "", fmt.Errorf("%s is not a mount point", mnt)
	}
	return fstype, opts, nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct{ point, fstype, opts string }

// mountTable reads /proc/self/mountinfo, in mount order.
func mountTable() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional…] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mountEntry{point: unescapeMountinfo(fields[4]), fstype: fields[sep+1], opts: fields[sep+3]})
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// statusField returns the fields of /proc/<pid>/status's line key.
func statusField(status []byte, key string) []string {
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			return strings.Fields(string(rest))
		}
	}
	return nil
}
