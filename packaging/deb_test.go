package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// The package holds what an operator installs, depends on exactly what its binaries need,
// passes lintian (with the overrides it ships, each explained), its unit passes systemd-analyze
// verify, and its default configuration is one the daemon reads and that sets nothing.
func TestPackage(t *testing.T) {
	deb := buildDeb(t, "0.0.2+new")
	contents := run(t, "", "dpkg-deb", "-c", deb)
	for _, p := range []string{"./usr/bin/basefs", "./usr/bin/basefs-agent", "./usr/bin/basefs-bench",
		"./lib/systemd/system/basefs@.service", "./etc/basefs/basefs.conf", "./usr/share/basefs/prometheus/basefs.rules.yml",
		"./usr/share/doc/basefs/README.md.gz", "./usr/share/doc/basefs/copyright", "./usr/share/doc/basefs/changelog.gz",
		"./usr/share/man/man1/basefs.1.gz"} {
		if !strings.Contains(contents, " "+p+"\n") {
			t.Errorf("the package lacks %s", p)
		}
	}
	depends := run(t, "", "dpkg-deb", "-f", deb, "Depends")
	// basefs is static (netgo, osusergo); the agent and the bench link libvirt (cgo); the
	// daemon and the agent run qemu-img. fuse3 is not needed: the daemon mounts with mount(2)
	// as root, never through fusermount3.
	for _, want := range []string{"libc6 (>= ", "libvirt0 (>= ", "qemu-utils"} {
		if !strings.Contains(depends, want) {
			t.Errorf("Depends %q lacks %q", depends, want)
		}
	}
	if strings.Contains(depends, "fuse") {
		t.Errorf("Depends %q names fuse: nothing in the package runs fusermount", depends)
	}
	if v := run(t, "", "dpkg-deb", "-f", deb, "Version"); strings.TrimSpace(v) != "0.0.2+new" {
		t.Errorf("Version %q", v)
	}
	testenv.NeedBinary(t, "lintian")
	lint := exec.Command("lintian", "--fail-on", "error,warning", "--no-tag-display-limit", deb)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}

	root := t.TempDir()
	run(t, "", "dpkg-deb", "-x", deb, root)
	// The unit as systemd would load it for nova's _base, next to the host's own units.
	testenv.NeedBinary(t, "systemd-analyze")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	run(t, "", "cp", "-a", "/lib/systemd/system/.", filepath.Join(root, "lib", "systemd", "system"))
	run(t, "", "cp", "/bin/mkdir", filepath.Join(root, "bin", "mkdir"))
	out := run(t, "", "systemd-analyze", "verify", "--root="+root, "basefs@var-lib-nova-instances-_base.service")
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	// The default configuration: read without error, everything at its default.
	bin := filepath.Join(root, "usr", "bin", "basefs")
	cfg := run(t, "", bin, "config", "--config", filepath.Join(root, "etc", "basefs", "basefs.conf"), "/mnt")
	for _, l := range strings.Split(cfg, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && l != "[mount]" {
			t.Errorf("the default configuration sets %q", l)
		}
	}
	if v := run(t, "", bin, "config", "--sample"); !strings.Contains(cfg, "config file: "+filepath.Join(root, "etc", "basefs", "basefs.conf")) || !strings.Contains(v, "#cache_size = -1") {
		t.Errorf("basefs config --sample:\n%s", v)
	}
}
