package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// A fresh machine has none of what earlier runs installed. Every outside program the Go code
// runs (tests, binaries, benchmarks) and every Python module the project's Python imports is
// listed here with the Debian package that brings it and the project script that installs it,
// and TestDependenciesInstalled holds the list to the code and to the scripts:
//   - a program or module the code uses without a row here fails (add the row and the install);
//   - a row whose script does not name its package in an install line fails (an install line
//     was removed: the first user's `make test` would fail, not this machine's);
//   - a row installed by scripts/setup-host.sh (which `make setup`, `make run` and `make test`
//     run first) must be there on this machine once it ran.
// Components a test starts itself (Glance, Ceph, OpenStack) are installed by their own start
// scripts, which the tests run before using them (testenv.Service, glancetest, s3test).

// dep is one outside program or Python module.
type dep struct {
	name   string // a program (as the code runs it) or a Python module (py: true)
	py     bool
	pkg    string // the Debian package that brings it
	script string // the project script that installs pkg; "" for the base system (essential packages)
}

const setupHost = "scripts/setup-host.sh"

// setupPackaging installs what make deb and the packaging tests use (make setup runs it too).
const setupPackaging = "scripts/setup-packaging.sh"

var deps = []dep{
	// Installed by scripts/setup-host.sh (make setup, first in make run and make test).
	{name: "qemu-img", pkg: "qemu-utils", script: setupHost},
	{name: "qemu-system-x86_64", pkg: "qemu-system-x86", script: setupHost},
	{name: "virsh", pkg: "libvirt-clients", script: setupHost},
	{name: "fusermount3", pkg: "fuse3", script: setupHost},
	{name: "nginx", pkg: "nginx-light", script: setupHost},
	{name: "fio", pkg: "fio", script: setupHost},
	{name: "curl", pkg: "curl", script: setupHost},
	{name: "useradd", pkg: "passwd", script: setupHost}, // the local users of the access tests (testenv.NewUser)
	{name: "userdel", pkg: "passwd", script: setupHost},
	{name: "mkfs.ext4", pkg: "e2fsprogs", script: setupHost},
	{name: "mkswap", pkg: "util-linux", script: setupHost},
	{name: "flock", pkg: "util-linux", script: setupHost},
	{name: "prlimit", pkg: "util-linux", script: setupHost}, // qemu-img info under nova's limits (chunkstore/child)
	{name: "mount", pkg: "mount", script: setupHost},        // a small tmpfs state (the qcow2 bomb test)
	{name: "umount", pkg: "mount", script: setupHost},
	{name: "nsenter", pkg: "util-linux", script: setupHost}, // scripts/fleet.sh: a host's daemon in its network namespace
	{name: "ip", pkg: "iproute2", script: setupHost},        // scripts/fleet.sh: namespaces, bridge, veth links
	{name: "tc", pkg: "iproute2", script: setupHost},        // scripts/fleet.sh: the links' bandwidth (tbf)
	{name: "python3", pkg: "python3", script: setupHost},    // Debian's /usr/bin/python3, not the pyenv one first on PATH
	{name: "nova", py: true, pkg: "python3-nova", script: setupHost},
	{name: "oslo_log", py: true, pkg: "python3-nova", script: setupHost},   // a dependency of python3-nova
	{name: "oslo_utils", py: true, pkg: "python3-nova", script: setupHost}, // likewise
	// Installed by scripts/setup-packaging.sh (make setup, make deb): the package and its checks.
	// promtool and prometheus are unpacked from Debian's prometheus by the same script and run
	// by path (packaging/helpers_test.go).
	{name: "fakeroot", pkg: "fakeroot", script: setupPackaging},
	{name: "dpkg-shlibdeps", pkg: "dpkg-dev", script: setupPackaging},
	{name: "lintian", pkg: "lintian", script: setupPackaging},
	{name: "systemd-analyze", pkg: "systemd", script: setupPackaging},
	{name: "systemd-escape", pkg: "systemd", script: setupPackaging},
	{name: "basefs", pkg: "-", script: "-"}, // /usr/bin/basefs: this project's own package, installed and purged by packaging's upgrade test
	// Installed by the component's start script, which its tests run first.
	{name: "openstack", pkg: "python3-openstackclient", script: "scripts/lib/openstack-install.sh"}, // the OpenStack test's `openstack aggregate cache image`
	// The base system: essential packages every Debian machine has.
	{name: "bash", pkg: "bash"},
	{name: "sh", pkg: "dash"},
	{name: "cp", pkg: "coreutils"},
	{name: "dd", pkg: "coreutils"},
	{name: "sync", pkg: "coreutils"},
	{name: "sleep", pkg: "coreutils"},
	{name: "apt-get", pkg: "apt", script: "-"}, // the package manager itself (not essential, never absent)
	{name: "dpkg-query", pkg: "dpkg"},
	{name: "dpkg", pkg: "dpkg"},
	{name: "dpkg-deb", pkg: "dpkg"},
	{name: "mkdir", pkg: "coreutils"},
	{name: "go", pkg: "-", script: "-"}, // the machine's Go toolchain (/usr/local/go), which builds the tests
}

// Where the Go code runs programs: exec.Command[Context]'s first argument, testenv.NeedBinary's
// arguments, exec.LookPath, and absolute paths of programs.
var (
	reCommand = regexp.MustCompile(`exec\.(?:Command\(|CommandContext\([A-Za-z_.()]+, )"([^"]+)"`)
	reNeed    = regexp.MustCompile(`NeedBinary\(t, ([^)]*)\)`)
	reLook    = regexp.MustCompile(`LookPath\("([^"]+)"\)`)
	reAbs     = regexp.MustCompile(`"/(?:usr/)?s?bin/([A-Za-z0-9._+-]+)"`)
	reString  = regexp.MustCompile(`"([^"]+)"`)
	rePyImp   = regexp.MustCompile(`(?m)^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)`)
	reGoPyImp = regexp.MustCompile(`"-c", "(?:import|from) ([A-Za-z_][A-Za-z0-9_]*)`)
)

// usedPrograms returns each outside program the module's Go files run, with a file that does.
func usedPrograms(t *testing.T, root string) map[string]string {
	t.Helper()
	used := map[string]string{}
	add := func(name, file string) {
		if name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, "/") {
			return // the project's own scripts and binaries, given by path
		}
		if _, ok := used[name]; !ok {
			used[name] = file
		}
	}
	walkFiles(t, root, ".go", func(rel string, src string) {
		for _, m := range reCommand.FindAllStringSubmatch(src, -1) {
			add(m[1], rel)
		}
		for _, m := range reNeed.FindAllStringSubmatch(src, -1) {
			for _, s := range reString.FindAllStringSubmatch(m[1], -1) {
				add(s[1], rel)
			}
		}
		for _, m := range reLook.FindAllStringSubmatch(src, -1) {
			add(m[1], rel)
		}
		for _, m := range reAbs.FindAllStringSubmatch(src, -1) {
			add(m[1], rel)
		}
	})
	return used
}

// usedModules returns each top-level Python module the project's Python imports (scripts/*.py,
// and `python3 -c "import …"` in Go code), with a file that does.
func usedModules(t *testing.T, root string) map[string]string {
	t.Helper()
	used := map[string]string{}
	walkFiles(t, root, ".py", func(rel, src string) {
		for _, m := range rePyImp.FindAllStringSubmatch(src, -1) {
			used[m[1]] = rel
		}
	})
	walkFiles(t, root, ".go", func(rel, src string) {
		for _, m := range reGoPyImp.FindAllStringSubmatch(src, -1) {
			used[m[1]] = rel
		}
	})
	return used
}

// walkFiles calls f with every file under root ending in ext (path relative to root, contents),
// skipping hidden directories, testdata and build outputs.
func walkFiles(t *testing.T, root, ext string, f func(rel, src string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin" || n == "bench-out") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ext) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		f(rel, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// installs reports whether script names pkg as a word outside comments (its install lines).
func installs(root, script, pkg string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(root, script))
	if err != nil {
		return false, err
	}
	word := regexp.MustCompile(`(^|[\s"'(])` + regexp.QuoteMeta(pkg) + `($|[\s"')])`)
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if word.MatchString(line) {
			return true, nil
		}
	}
	return false, nil
}

// checkDeps returns what is wrong with rows against the code's use and the scripts.
func checkDeps(t *testing.T, root string, rows []dep, programs, modules map[string]string, stdlib map[string]bool) []string {
	var bad []string
	known := map[string]bool{}
	for _, d := range rows {
		known[fmt.Sprint(d.py, d.name)] = true
		switch d.script {
		case "-":
		case "":
			if out, err := exec.Command("dpkg-query", "-W", "-f=${Essential}", d.pkg).Output(); err == nil && strings.TrimSpace(string(out)) != "yes" {
				bad = append(bad, fmt.Sprintf("%s: listed as the base system, but its package %s is not essential: install it in %s", d.name, d.pkg, setupHost))
			}
		default:
			ok, err := installs(root, d.script, d.pkg)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", d.name, err))
			} else if !ok {
				bad = append(bad, fmt.Sprintf("%s: %s does not install package %s (a fresh machine would lack %s): add it to that script's install list", d.name, d.script, d.pkg, d.name))
			}
		}
	}
	for _, name := range sortedKeys(programs) {
		if !known[fmt.Sprint(false, name)] {
			bad = append(bad, fmt.Sprintf("program %q (run by %s) has no row in chunkstore/testenv/deps_test.go: add its package and the script that installs it (scripts/setup-host.sh, or the component's start script)", name, programs[name]))
		}
	}
	for _, name := range sortedKeys(modules) {
		if !stdlib[name] && !known[fmt.Sprint(true, name)] {
			bad = append(bad, fmt.Sprintf("Python module %q (imported by %s) has no row in chunkstore/testenv/deps_test.go: add its package and the script that installs it", name, modules[name]))
		}
	}
	return bad
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pythonStdlib lists the standard library's top-level modules of Debian's python3.
func pythonStdlib(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.stdlib_module_names))").Output()
	if err != nil {
		t.Fatalf("Debian's /usr/bin/python3 does not run (%v): run %s (it installs python3)", err, setupHost)
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		m[l] = true
	}
	return m
}

func TestDependenciesInstalled(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range checkDeps(t, root, deps, usedPrograms(t, root), usedModules(t, root), pythonStdlib(t)) {
		t.Error(b)
	}
	// What setup-host.sh installs is here once it ran (make test runs it first).
	var mods []string
	for _, d := range deps {
		if d.script != setupHost {
			continue
		}
		if d.py {
			mods = append(mods, d.name)
			continue
		}
		if _, err := exec.LookPath(d.name); err != nil && !errors.Is(err, exec.ErrDot) {
			t.Errorf("%s is missing (package %s): run %s", d.name, d.pkg, d.script)
		}
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import "+strings.Join(mods, ", ")).CombinedOutput(); err != nil {
		t.Errorf("Debian's python3 cannot import %s (packages from %s): %v\n%s", strings.Join(mods, ", "), setupHost, err, out)
	}
}

// TestDependencyCheckCatches plants what the check exists for: an install line removed from a
// script, and a program used without a row.
func TestDependencyCheckCatches(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "scripts"), 0o755)
	os.WriteFile(filepath.Join(root, setupHost), []byte("pkgs=(\n\tqemu-utils # qemu-img\n\t# python3-nova was here\n)\n"), 0o644)
	rows := []dep{
		{name: "qemu-img", pkg: "qemu-utils", script: setupHost},
		{name: "nova", py: true, pkg: "python3-nova", script: setupHost},
	}
	programs := map[string]string{"qemu-img": "a_test.go", "mkfs.xfs": "b_test.go"}
	modules := map[string]string{"nova": "driver.py", "json": "driver.py"}
	bad := checkDeps(t, root, rows, programs, modules, map[string]bool{"json": true})
	want := []string{"nova: scripts/setup-host.sh does not install package python3-nova", `program "mkfs.xfs" (run by b_test.go) has no row`}
	if len(bad) != len(want) {
		t.Fatalf("check found %d problems, want %d: %q", len(bad), len(want), bad)
	}
	for i, w := range want {
		if !strings.Contains(bad[i], w) {
			t.Errorf("problem %d = %q, want it to say %q", i, bad[i], w)
		}
	}
}
