package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore"
)

func TestMain(m *testing.M) {
	os.Setenv("BASEFS_CONFIG", "") // this host's /etc/basefs/basefs.conf changes no test
	agenttest.Main(m)
}

// agentCmd runs the command in process and returns stdout, stderr and the exit status.
func agentCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func mustAgent(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := agentCmd(t, args...)
	if code != 0 {
		t.Fatalf("basefs-agent %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestUsageErrors(t *testing.T) {
	d := chunkstore.Sum([]byte("x")).String()
	spawn := []string{"spawn", "--instance", "a", "--image", d, "--disk-size", "1G"}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"spawn"}, "--instance is required"},
		{[]string{"spawn", "--instance", "a", "--disk-size", "1G"}, "--image is required"},
		{[]string{"spawn", "--instance", "a", "--image", d}, "--disk-size is required"},
		{[]string{"spawn", "--instance", "../a", "--image", d, "--disk-size", "1G"}, "must start with a letter or digit"},
		{[]string{"spawn", "--instance", "a/b", "--image", d, "--disk-size", "1G"}, "is not allowed"},
		{[]string{"spawn", "--instance", "a", "--image", "cirros", "--disk-size", "1G"}, "--image: image reference"},
		{[]string{"spawn", "--instance", "a", "--image", "glance://1", "--disk-size", "1G"}, "want a UUID"},
		{[]string{"spawn", "--instance", "a", "--image", d, "--disk-size", "1GB"}, "ambiguous"},
		{[]string{"spawn", "--instance", "a", "--image", d, "--disk-size", "1.5G"}, "not a whole number"},
		{[]string{"spawn", "--instance", "a", "--image", d, "--disk-size", "-1G"}, "does not start with a digit"},
		{[]string{"spawn", "--instance", "a", "--image", d, "--disk-size", "0"}, "positive multiple of 512"},
		{[]string{"spawn", "--instance", "a", "--image", d, "--disk-size", "1000"}, "positive multiple of 512"},
		{append(spawn, "--memory", "12"), "--memory 12: must be at least 1M"},
		{append(spawn, "--memory", "2X"), "unknown unit"},
		{append(spawn, "--vcpus", "0"), "--vcpus 0"},
		{append(spawn, "--vcpus", "two"), "invalid argument"},
		{append(spawn, "--initrd", "/boot/initrd"), "need --kernel"},
		{append(spawn, "extra"), `unexpected argument "extra"`},
		{append(spawn, "--virt-type", "xen"), `--virt-type "xen": want one of kvm, qemu`},
		{append(spawn, "--cache-mode", "fast"), `--cache-mode "fast"`},
		{append(spawn, "--frobnicate"), "unknown flag"},
		{[]string{"terminate"}, "--instance is required"},
		{[]string{"terminate", "--instance", ".."}, "must start with a letter or digit"},
		{[]string{"show"}, "--instance is required"},
		{[]string{"list", "x"}, "unexpected argument"},
	} {
		out, errOut, code := agentCmd(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.says) || out != "" {
			t.Errorf("basefs-agent %q: exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, and stderr saying %q", tc.args, code, out, errOut, tc.says)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"spawn", "--help"}, {"list", "-h"}} {
		if _, errOut, code := agentCmd(t, args...); code != 0 || !strings.Contains(errOut, "sage") {
			t.Errorf("basefs-agent %q: exit %d\n%s", args, code, errOut)
		}
	}
}

// fetches runs `basefs status --json` and returns the chunk fetches of the first origin.
func fetches(t *testing.T, e *agenttest.Env) int64 {
	t.Helper()
	out, err := exec.Command(agenttest.Basefs(t), "status", "--state", e.State, "--json").Output()
	if err != nil {
		t.Fatalf("basefs status: %v", err)
	}
	var st struct {
		Stats struct {
			Origins []struct {
				Fetches int64 `json:"fetches"`
			} `json:"origins"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(out, &st); err != nil || len(st.Stats.Origins) != 1 {
		t.Fatalf("basefs status --json: %v\n%s", err, out)
	}
	return st.Stats.Origins[0].Fetches
}

// TestCLI drives the command as an orchestrator would: spawn cold and warm, show, list,
// terminate twice; failures exit 1 with a message (and JSON with --json), leaving nothing.
func TestCLI(t *testing.T) {
	e := agenttest.New(t)
	img := e.Import(4, 3<<20, 1<<20)
	host := []string{"--instances-path", e.Instances, "--kernel-dir", e.Dir, "--connect", agenttest.Connect}
	spawnArgs := func(id, disk string) []string {
		return append([]string{"spawn", "--instance", id, "--image", img.Digest, "--disk-size", disk,
			"--memory", "256M", "--virt-type", agenttest.VirtType(), "--base", e.Mount,
			"--kernel", e.Kernel, "--initrd", e.Initrd, "--cmdline", agenttest.Cmdline(img.Size, img.Size, "cli")}, host...)
	}
	a, b := e.ID("cli-a"), e.ID("cli-b")

	// Cold spawn, JSON.
	var res agent.SpawnResult
	out := mustAgent(t, append(spawnArgs(a, "1G"), "--json")...)
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("spawn --json: %v\n%s", err, out)
	}
	if res.ID != a || res.State != "running" || res.View != img.Digest+"_1" || res.DiskSize != agent.GiB || res.Seconds.Total <= 0 {
		t.Fatalf("spawn --json: %s", out)
	}
	want := fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", img.SHA256, img.Size)
	if line, _ := agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST sha256=", 90*time.Second); line != want {
		t.Fatalf("guest: %s; want %s", line, want)
	}
	agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST done", 90*time.Second)
	cold := fetches(t, e)
	if cold == 0 {
		t.Fatal("the cold spawn fetched nothing")
	}

	// Warm spawn, a readable line; nothing fetched.
	out = mustAgent(t, spawnArgs(b, "2GiB")...)
	if !strings.HasPrefix(out, "spawned "+b+" in ") || strings.Count(out, "\n") != 1 || !strings.Contains(out, "running") {
		t.Fatalf("spawn: %q; want one line", out)
	}
	agenttest.WaitConsole(t, filepath.Join(e.Instances, b, "console.log"), "BASEFS-GUEST done", 90*time.Second)
	if warm := fetches(t, e); warm != cold {
		t.Fatalf("the warm spawn fetched: %d → %d chunk fetches", cold, warm)
	}

	// show and list.
	var inst agent.Instance
	if err := json.Unmarshal([]byte(mustAgent(t, append([]string{"show", "--instance", a, "--json"}, host...)...)), &inst); err != nil {
		t.Fatal(err)
	}
	if inst.ID != a || inst.Image.String() != img.Digest || inst.Disk != filepath.Join(e.Instances, a, "disk") || inst.Allocated <= 0 {
		t.Fatalf("show --json: %+v", inst)
	}
	out = mustAgent(t, append([]string{"show", "--instance", b}, host...)...)
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, b+" ") || !strings.Contains(out, img.Digest[:12]) {
		t.Fatalf("show: %q", out)
	}
	var list []agent.Instance
	if err := json.Unmarshal([]byte(mustAgent(t, append([]string{"list", "--json"}, host...)...)), &list); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, in := range list {
		if in.ID == a || in.ID == b {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("list --json: %+v; want %s and %s", list, a, b)
	}
	out = mustAgent(t, append([]string{"list"}, host...)...)
	if !strings.Contains(out, "\n"+b+" ") && !strings.HasPrefix(out, b+" ") {
		t.Fatalf("list: %q", out)
	}
	t.Logf("list:\n%s", out)

	// Failures: exit 1, a message, JSON on request, nothing left.
	plain := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"unknown image", append(spawnArgs(e.ID("f1"), "1G"), "--image", chunkstore.Sum([]byte("nope")).String()), "unknown to the basefs daemon"},
		{"disk smaller than the image", spawnArgs(e.ID("f2"), "1M"), "smaller than the image"},
		{"libvirtd down", append(spawnArgs(e.ID("f3"), "1G"), "--connect", "qemu+unix:///system?socket=/nonexistent"), "is libvirtd running"},
		{"missing kernel", append(spawnArgs(e.ID("f4"), "1G"), "--kernel", "/nonexistent/vmlinuz"), "kernel /nonexistent/vmlinuz: no such file"},
		{"ID in use", spawnArgs(a, "1G"), "exists"},
		{"daemon not running", append(spawnArgs(e.ID("f5"), "1G"), "--base", plain), "not a basefs mount"},
	} {
		out, errOut, code := agentCmd(t, append(tc.args, "--json")...)
		var je struct{ Error string }
		json.Unmarshal([]byte(out), &je)
		if code != 1 || !strings.Contains(errOut, tc.says) || !strings.Contains(je.Error, tc.says) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", tc.name, code, out, errOut, tc.says)
		}
		id := tc.args[2]
		if id != a {
			e.NoLeftovers(t, id)
		}
	}
	if _, err := os.Stat(filepath.Join(e.Instances, a, "disk")); err != nil || !agenttest.DomainExists(t, agent.DomainName(a)) {
		t.Fatalf("the refused spawn of %s touched it: %v", a, err)
	}

	// terminate, twice.
	var tr agent.TerminateResult
	if err := json.Unmarshal([]byte(mustAgent(t, append([]string{"terminate", "--instance", a, "--json"}, host...)...)), &tr); err != nil {
		t.Fatal(err)
	}
	if !tr.Existed || tr.Domain != agent.DomainName(a) {
		t.Fatalf("terminate --json: %+v", tr)
	}
	e.NoLeftovers(t, a)
	out = mustAgent(t, append([]string{"terminate", "--instance", a}, host...)...)
	if !strings.Contains(out, "does not exist") {
		t.Fatalf("terminate again: %q", out)
	}
	out = mustAgent(t, append([]string{"terminate", "--instance", b}, host...)...)
	if !strings.HasPrefix(out, "terminated "+b) {
		t.Fatalf("terminate: %q", out)
	}
	e.NoLeftovers(t, b)
	if _, errOut, code := agentCmd(t, append([]string{"show", "--instance", a}, host...)...); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("show of a terminated instance: exit %d, %s", code, errOut)
	}
	if names, _ := os.ReadDir(e.Mount); len(names) != 1 || names[0].Name() != img.Digest {
		t.Fatalf("the base is no longer listed: %v", names)
	}
}

// TestConfigFile: the [agent] section of basefs's configuration file sets what every command
// shares (here the libvirt URI), the command line wins over it, a setting that is not the
// section's is refused with where it is, and basefs itself accepts a file with [agent].
func TestConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "basefs.conf")
	os.WriteFile(conf, []byte("[mount]\ncache_size = 1073741824\n[agent]\nconnect = bogus:///nowhere\n"), 0o644)
	if _, errOut, code := agentCmd(t, "list", "--config", conf); code != 1 || !strings.Contains(errOut, "bogus:///nowhere") {
		t.Errorf("list with [agent] connect = bogus:///nowhere: exit %d, %s; want it to try that URI", code, errOut)
	}
	t.Setenv("BASEFS_CONFIG", conf) // the default file, as /etc/basefs/basefs.conf would be
	if _, errOut, code := agentCmd(t, "list"); code != 1 || !strings.Contains(errOut, "bogus:///nowhere") {
		t.Errorf("list with BASEFS_CONFIG's [agent]: exit %d, %s; want it to try bogus:///nowhere", code, errOut)
	}
	mustAgent(t, "list", "--connect", agenttest.Connect) // the command line wins
	os.WriteFile(conf, []byte("[agent]\nmemory = 1G\n"), 0o644)
	if _, errOut, code := agentCmd(t, "list"); code == 0 || !strings.Contains(errOut, conf+":2: [agent] memory: no such setting (the section's settings: instances_path, connect, kernel_dir, verbose)") {
		t.Errorf("list with [agent] memory: exit %d, %s; want the setting refused with its line", code, errOut)
	}
}
