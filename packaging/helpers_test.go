package packaging

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	r, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tool returns a program scripts/setup-packaging.sh unpacked from Debian's prometheus package.
func tool(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("BASEFS_TOOLS")
	if dir == "" {
		dir = "/var/cache/basefs-tools"
	}
	p := filepath.Join(dir, "prometheus", "usr", "bin", name)
	if _, err := os.Stat(p); err != nil {
		testenv.Skip(t, p+" is missing: run scripts/setup-packaging.sh")
	}
	return p
}

func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEB_COMPRESS=gzip")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	debMu   sync.Mutex
	debs    = map[string]string{}
	debsDir string
)

// buildDeb builds the package of this checkout with version v, once per test process.
func buildDeb(t testing.TB, v string) string {
	t.Helper()
	testenv.NeedBinary(t, "dpkg-deb", "fakeroot", "dpkg-shlibdeps")
	debMu.Lock()
	defer debMu.Unlock()
	if p, ok := debs[v]; ok {
		return p
	}
	if debsDir == "" {
		d, err := os.MkdirTemp("", "basefs-debs")
		if err != nil {
			t.Fatal(err)
		}
		debsDir = d
	}
	t0 := time.Now()
	out := strings.TrimSpace(run(t, repoRoot(t), filepath.Join(repoRoot(t), "scripts", "build-deb.sh"), debsDir, v))
	p := out[strings.LastIndexByte(out, '\n')+1:]
	t.Logf("built %s in %.1fs", filepath.Base(p), time.Since(t0).Seconds())
	debs[v] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if debsDir != "" {
		os.RemoveAll(debsDir)
	}
	os.Exit(code)
}

// ruleMetrics returns every basefs metric name the alert rules use.
func ruleMetrics(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "basefs.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs bytes.Buffer
	for _, l := range strings.Split(string(b), "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "expr:") {
			exprs.WriteString(s + "\n")
		}
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bbasefs_[a-z0-9_]+`).FindAllString(exprs.String(), -1) {
		seen[m] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 8 {
		t.Fatalf("only %d metric names in the rules: %v", len(names), names)
	}
	return names
}

// unitLine returns the value of key (ExecStart, …) in the unit file, with systemd's
// specifiers %f (the instance's path) and %i (the instance: that path escaped) replaced.
func unitLine(t testing.TB, unit, key, instance, path string) string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.NewReplacer("%f", path, "%i", instance).Replace(v)
		}
	}
	t.Fatalf("%s has no %s line", unit, key)
	return ""
}

// execLine splits a unit's Exec line as systemd does for these lines (words; $VAR as
// separate words from env) and returns the command.
func execLine(line string, env map[string]string) *exec.Cmd {
	var argv []string
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, "$"); ok {
			argv = append(argv, strings.Fields(env[v])...)
			continue
		}
		argv = append(argv, w)
	}
	return exec.Command(argv[0], argv[1:]...)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
