package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Service is a real component (a Glance, a Ceph) that the checkout's scripts start once per
// test process, in a state directory of its own that every script run is given in DirVar.
// Its package calls Stop from TestMain, after m.Run.
type Service struct {
	Name    string // for messages: "Glance"
	DirVar  string // the scripts' environment variable naming the state directory
	TempDir string // the pattern of the state directory's name under $TMPDIR (os.MkdirTemp)

	once    sync.Once
	scripts string
	dir     string
	err     error
}

// Start starts the service once: it finds the scripts, makes the state directory and calls
// start. If that failed (in this call or the first), t is skipped with the reason, or fails
// under BASEFS_TEST_NO_SKIP=1.
func (s *Service) Start(t testing.TB, start func() error) {
	t.Helper()
	s.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			s.err = err
			return
		}
		s.scripts = filepath.Join(root, "scripts")
		if s.dir, s.err = os.MkdirTemp("", s.TempDir); s.err != nil {
			return
		}
		s.err = start()
	})
	if s.err != nil {
		Skip(t, "cannot start "+s.Name+": "+s.err.Error())
	}
}

// Dir returns the state directory ("" before Start).
func (s *Service) Dir() string { return s.dir }

// Run runs scripts/<script> with args, and env added to this process's environment and the
// state directory's variable. It returns the script's standard output; an error carries its
// standard error.
func (s *Service) Run(script string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.scripts, script), args...)
	cmd.Env = append(append(os.Environ(), s.DirVar+"="+s.dir), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/%s: %v: %s", script, err, stderr.String())
	}
	return out, nil
}

// Stop runs scripts/<script> with env (when Start made the state directory; a failure is
// ignored) and removes the state directory.
func (s *Service) Stop(script string, env ...string) {
	if s.dir == "" {
		return
	}
	s.Run(script, env)
	os.RemoveAll(s.dir)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
