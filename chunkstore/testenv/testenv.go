// Package testenv lets tests ask for a real component (a binary, a device, root) and skip
// with a named reason when it is missing — unless BASEFS_TEST_NO_SKIP=1, as in CI, where a
// missing capability fails the test instead, so an integration test can never pass by skipping.
// RepoRoot finds the checkout; Service runs a component that its scripts/ start, once per test
// process in a state directory of its own.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NoSkip reports whether skips are forbidden (BASEFS_TEST_NO_SKIP=1).
func NoSkip() bool { return os.Getenv("BASEFS_TEST_NO_SKIP") == "1" }

// Skip skips t with reason, or fails it when skips are forbidden.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if NoSkip() {
		t.Fatalf("required capability missing (BASEFS_TEST_NO_SKIP=1): %s; run scripts/setup-host.sh", reason)
	}
	t.Skip(reason)
}

// NeedBinary skips t unless each named program is on PATH, and returns the first one's path.
func NeedBinary(t testing.TB, names ...string) string {
	t.Helper()
	var first string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Skip(t, n+" is not installed")
		}
		if first == "" {
			first = p
		}
	}
	return first
}

// NeedRoot skips t unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// NeedFUSE skips t unless /dev/fuse and fusermount3 are usable.
func NeedFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		Skip(t, "/dev/fuse is missing")
	}
	NeedBinary(t, "fusermount3")
}

// RepoRoot returns the module's root directory (where go.mod is), upwards from the working
// directory: a test runs in its package's directory, inside the checkout.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
