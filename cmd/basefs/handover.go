package main

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
)

// adoptFlag marks a supervisor started by the serving process whose supervisor died.
const adoptFlag = "adopt"

// startServing returns how a supervisor starts a serving process on the connection dev with
// the control listener lf: `basefs serve` with the mount's flags, the connection as fd 3, the
// listener as fd 4 and its end of the link as fd 5. It is in a process group of its own, so
// a terminal's ^C reaches only the supervisor (which unmounts, then stops it).
func startServing(self string, args []string, dev, lf *os.File) func(link *os.File) (*exec.Cmd, error) {
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--"+adoptFlag })
	return func(link *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"serve", "--fuse-fd", "3", "--control-fd", "4", "--link-fd", "5"}, args...)...)
		cmd.ExtraFiles = []*os.File{dev, lf, link}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd, cmd.Start()
	}
}

// respawnSupervisor returns how a serving process starts a supervisor that adopts it: `basefs
// mount --adopt` with the mount's flags, the connection as fd 3, the listener as fd 4, its
// end of the link as fd 5; in a session of its own (it outlives this process).
func respawnSupervisor(self string, mountArgs []string, dev, lf *os.File) func(link *os.File) (*exec.Cmd, error) {
	return func(link *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"mount", "--" + adoptFlag}, mountArgs...)...)
		cmd.ExtraFiles = []*os.File{dev, lf, link}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return cmd, cmd.Start()
	}
}

// mountArgs returns serve's arguments without what only serve takes: the mount's own.
func mountArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--fuse-fd", "--control-fd", "--link-fd":
			i++
		default:
			out = append(out, args[i])
		}
	}
	return out
}
