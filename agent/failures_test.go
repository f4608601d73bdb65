package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore"
)

// TestSpawnFailures: every failure is a clear error and leaves nothing behind — no domain,
// no instance directory (so no overlay) — including a failure after the domain was defined.
func TestSpawnFailures(t *testing.T) {
	e := agenttest.New(t)
	ctx := context.Background()
	img := e.Import(2, 2<<20, 0)
	garbage := filepath.Join(e.Dir, "not-a-kernel")
	os.WriteFile(garbage, []byte("this is not a kernel\n"), 0o644)
	plainDir := t.TempDir()
	// A host file outside the kernel directory, named directly or through a link inside it.
	hostFile := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(hostFile, []byte("root:secret\n"), 0o600)
	linkOut := filepath.Join(e.Dir, "vmlinuz-link")
	os.Symlink(hostFile, linkOut)

	for _, tc := range []struct {
		name  string
		agent *agent.Agent
		edit  func(*agent.SpawnRequest)
		is    error    // errors.Is, when set
		says  []string // the message contains each
	}{
		{name: "unknown image", edit: func(r *agent.SpawnRequest) { r.Image = chunkstore.Sum([]byte("no such image")).String() },
			is: chunkstore.ErrNotFound, says: []string{"is unknown to the basefs daemon", "import or publish it first"}},
		{name: "bad image reference", edit: func(r *agent.SpawnRequest) { r.Image = "ubuntu" },
			is: agent.ErrInvalid, says: []string{"image reference"}},
		{name: "disk smaller than the image", edit: func(r *agent.SpawnRequest) { r.DiskSize = 1 << 20 },
			is: agent.ErrInvalid, says: []string{"smaller than the image", "--disk-size of at least 2 MiB"}},
		{name: "libvirtd down", agent: agent.New(agent.Config{InstancesPath: e.Instances, KernelDirs: []string{e.Dir}, Connect: "qemu+unix:///system?socket=/nonexistent"}),
			says: []string{"libvirt at qemu+unix:///system?socket=/nonexistent", "is libvirtd running"}},
		{name: "missing kernel", edit: func(r *agent.SpawnRequest) { r.Kernel = filepath.Join(e.Dir, "no-such-vmlinuz") },
			is: agent.ErrInvalid, says: []string{"kernel", "no-such-vmlinuz", "no such file"}},
		{name: "missing initrd", edit: func(r *agent.SpawnRequest) { r.Initrd = filepath.Join(e.Dir, "no-such-initrd") },
			is: agent.ErrInvalid, says: []string{"initrd", "no-such-initrd", "no such file"}},
		{name: "kernel outside the kernel directory", edit: func(r *agent.SpawnRequest) { r.Kernel = hostFile },
			is: agent.ErrInvalid, says: []string{"kernel", "outside the kernel directories"}},
		{name: "initrd linked out of the kernel directory", edit: func(r *agent.SpawnRequest) { r.Initrd = linkOut },
			is: agent.ErrInvalid, says: []string{"initrd", hostFile, "outside the kernel directories"}},
		{name: "daemon not running", edit: func(r *agent.SpawnRequest) { r.Base = plainDir },
			says: []string{plainDir, "not a basefs mount", "is the daemon running"}},
		{name: "bad ID", edit: func(r *agent.SpawnRequest) { r.ID = "../etc" },
			is: agent.ErrInvalid, says: []string{"must start with a letter or digit"}},
		{name: "bad virt type", edit: func(r *agent.SpawnRequest) { r.VirtType = "xen" },
			is: agent.ErrInvalid, says: []string{"virt type"}},
		{name: "bad cache mode", edit: func(r *agent.SpawnRequest) { r.CacheMode = "fast" },
			is: agent.ErrInvalid, says: []string{"cache mode"}},
		// qemu refuses the kernel after the overlay was made and the domain defined: all of it
		// is rolled back.
		{name: "start fails", edit: func(r *agent.SpawnRequest) { r.Kernel = garbage },
			says: []string{"start", "rolled back"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.ID(strings.ReplaceAll(tc.name, " ", "-"))
			req := e.SpawnRequest(id, img, agent.GiB, img.Size, "x")
			if tc.edit != nil {
				tc.edit(&req)
			}
			a := tc.agent
			if a == nil {
				a = e.Agent
			}
			res, err := a.Spawn(ctx, req)
			if err == nil {
				t.Fatalf("spawn succeeded: %+v", res)
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error is not %v", tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q", s)
				}
			}
			e.NoLeftovers(t, id)
		})
	}

	t.Run("directory in use", func(t *testing.T) {
		// A directory without a domain (a spawn in progress, or a crash's leftovers) is the
		// instance's lock: refused, and left as it was.
		id := e.ID("dir-in-use")
		dir := filepath.Join(e.Instances, id)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644)
		_, err := e.Agent.Spawn(ctx, e.SpawnRequest(id, img, agent.GiB, img.Size, "x"))
		if !errors.Is(err, agent.ErrExists) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("spawn: %v; want ErrExists naming %s", err, dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
			t.Fatalf("the existing directory was touched: %v", err)
		}
		if agenttest.DomainExists(t, agent.DomainName(id)) {
			t.Fatal("a domain was defined")
		}
		inst, err := e.Agent.Show(ctx, id)
		if err != nil || inst.State != agent.StateNoDomain {
			t.Fatalf("show: %+v, %v; want state %s", inst, err, agent.StateNoDomain)
		}
		tr, err := e.Agent.Terminate(ctx, id)
		if err != nil || !tr.Existed || tr.Domain != "" {
			t.Fatalf("terminate: %+v, %v", tr, err)
		}
		e.NoLeftovers(t, id)
	})

	t.Run("terminate nonexistent", func(t *testing.T) {
		id := e.ID("never-spawned")
		tr, err := e.Agent.Terminate(ctx, id)
		if err != nil || tr.Existed || !strings.Contains(tr.Message, "does not exist") {
			t.Fatalf("terminate: %+v, %v; want success saying it does not exist", tr, err)
		}
		if _, err := e.Agent.Show(ctx, id); !errors.Is(err, agent.ErrNoInstance) {
			t.Fatalf("show: %v; want ErrNoInstance", err)
		}
	})

	t.Run("libvirtd down for terminate, list, show", func(t *testing.T) {
		a := agent.New(agent.Config{InstancesPath: e.Instances, KernelDirs: []string{e.Dir}, Connect: "qemu+unix:///system?socket=/nonexistent"})
		if _, err := a.Terminate(ctx, "x"); err == nil {
			t.Error("terminate succeeded")
		}
		if _, err := a.List(ctx); err == nil {
			t.Error("list succeeded")
		}
		if _, err := a.Show(ctx, "x"); err == nil {
			t.Error("show succeeded")
		}
	})
}

// TestConcurrentSpawns: two instances spawned at once both boot; a third spawn of the same
// ID as one of them, at the same time, fails with ErrExists and harms neither.
func TestConcurrentSpawns(t *testing.T) {
	e := agenttest.New(t)
	ctx := context.Background()
	img := e.Import(3, 3<<20, 0)
	a, b := e.ID("a"), e.ID("b")
	reqs := []agent.SpawnRequest{
		e.SpawnRequest(a, img, agent.GiB, img.Size, "a"),
		e.SpawnRequest(b, img, 2*agent.GiB, img.Size, "b"),
		e.SpawnRequest(a, img, agent.GiB, img.Size, "a2"),
	}
	results := make([]*agent.SpawnResult, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { results[i], errs[i] = e.Agent.Spawn(ctx, r) })
	}
	wg.Wait()
	if errs[1] != nil {
		t.Fatalf("spawn %s: %v", b, errs[1])
	}
	// Exactly one of the two spawns of a wins.
	win, lose := 0, 2
	if errs[0] != nil {
		win, lose = 2, 0
	}
	if errs[win] != nil || !errors.Is(errs[lose], agent.ErrExists) {
		t.Fatalf("two spawns of %s: %v and %v; want one success and one ErrExists", a, errs[0], errs[2])
	}
	t.Logf("the losing spawn of %s: %v", a, errs[lose])
	for _, res := range []*agent.SpawnResult{results[win], results[1]} {
		want := fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", img.SHA256, img.Size)
		if line, _ := agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST sha256=", bootTimeout); line != want {
			t.Fatalf("%s: %s; want %s", res.ID, line, want)
		}
		agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST done", bootTimeout)
	}
	used, err := agent.InUseImages(e.Instances)
	if err != nil || len(used[chunkstore.MustParseDigest(img.Digest)]) != 2 {
		t.Fatalf("InUseImages: %v, %v; want both instances", used, err)
	}
	for _, id := range []string{a, b} {
		if _, err := e.Agent.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
		e.NoLeftovers(t, id)
	}
}

// TestTerminateRemovesOnlyItsDirectory: a domain whose metadata names a directory outside the
// instances path (defined by someone else, or spawned with another --instances-path) is
// terminated, and that directory is left alone.
func TestTerminateRemovesOnlyItsDirectory(t *testing.T) {
	agenttest.Need(t)
	dir := t.TempDir()
	instances := filepath.Join(dir, "instances")
	a := agent.New(agent.Config{InstancesPath: instances, Connect: agenttest.Connect})
	id := fmt.Sprintf("t24-%d", os.Getpid())
	victim := filepath.Join(dir, "etc", id) // as /etc/<id> would be
	os.MkdirAll(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o644)
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>`+
		`<metadata><basefs:instance xmlns:basefs="%s"><basefs:id>%s</basefs:id><basefs:dir>%s</basefs:dir></basefs:instance></metadata></domain>`,
		agent.DomainName(id), agent.MetadataNS, id, victim)
	def := filepath.Join(dir, "domain.xml")
	os.WriteFile(def, []byte(xml), 0o644)
	if out, err := exec.Command("virsh", "-c", agenttest.Connect, "define", def).CombinedOutput(); err != nil {
		t.Fatalf("virsh define: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("virsh", "-c", agenttest.Connect, "undefine", agent.DomainName(id)).Run() })
	res, err := a.Terminate(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
		t.Errorf("terminate removed %s, outside the instances path: %v", victim, err)
	}
	if res.Domain == "" || res.LeftAlone != victim || !strings.Contains(res.Message, "left alone") {
		t.Errorf("result %+v: want the domain removed and %s left alone", res, victim)
	}
}
