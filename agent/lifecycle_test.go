package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore"
)

const bootTimeout = 90 * time.Second

// bootTimes is one boot's timeline, from the Spawn call.
type bootTimes struct {
	running, firstLine, sha time.Duration
}

// spawnAndBoot spawns the test guest and waits until it has printed its sha256 and written
// its marker ("BASEFS-GUEST done"); it checks the sha256 against the image's.
func spawnAndBoot(t *testing.T, e *agenttest.Env, req agent.SpawnRequest, img agenttest.Image) (*agent.SpawnResult, bootTimes) {
	t.Helper()
	t0 := time.Now()
	res, err := e.Agent.Spawn(context.Background(), req)
	if err != nil {
		t.Fatalf("spawn %s: %v", req.ID, err)
	}
	var bt bootTimes
	bt.running = time.Since(t0)
	if res.State != "running" {
		t.Fatalf("spawn %s: state %q, want running", req.ID, res.State)
	}
	_, at := agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST boot", bootTimeout)
	bt.firstLine = at.Sub(t0)
	line, at := agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST sha256=", bootTimeout)
	bt.sha = at.Sub(t0)
	if want := fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", img.SHA256, img.Size); line != want {
		t.Fatalf("guest %s read other bytes than the image's:\n got %s\nwant %s", req.ID, line, want)
	}
	agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST done", bootTimeout)
	return res, bt
}

// waitState waits until show reports the state.
func waitState(t *testing.T, e *agenttest.Env, id, state string) *agent.Instance {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for {
		inst, err := e.Agent.Show(context.Background(), id)
		if err != nil {
			t.Fatalf("show %s: %v", id, err)
		}
		if inst.State == state {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("show %s: state %s, want %s", id, inst.State, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLifecycle: a cold spawn boots the guest, which reads exactly the image and writes to
// its overlay only; a warm spawn fetches nothing; the ID in use is refused without harm;
// terminate removes domain and directory and keeps the base; the ID can be spawned again.
func TestLifecycle(t *testing.T) {
	e := agenttest.New(t)
	ctx := context.Background()
	img := e.Import(1, 4<<20, 1<<20) // 4 MiB of data, a 1 MiB hole
	d := chunkstore.MustParseDigest(img.Digest)
	c1, c2 := e.ID("c1"), e.ID("c2")
	const markerOff = 1<<20 + 123 // inside the image's data: the overlay must take it
	marker := fmt.Sprintf("m%d", os.Getpid())

	// Cold: the daemon's state is empty.
	if st := e.Stats(); st.Fetches() != 0 || st.ManifestFetches != 0 {
		t.Fatalf("state not cold: %+v", st)
	}
	res, cold := spawnAndBoot(t, e, e.SpawnRequest(c1, img, 1*agent.GiB, markerOff, marker), img)
	if res.View != img.Digest+"_1" || res.Backing != filepath.Join(e.Mount, img.Digest+"_1") || res.DiskSize != agent.GiB {
		t.Fatalf("spawn: view %s backing %s disk size %d; want the 1 GiB view", res.View, res.Backing, res.DiskSize)
	}
	if res.Seconds.Total <= 0 || res.Seconds.Start <= 0 {
		t.Errorf("spawn timings: %+v", res.Seconds)
	}
	if st := e.Stats(); st.Fetches() == 0 || st.ManifestFetches != 1 {
		t.Errorf("cold spawn: %d chunk fetches, %d manifest fetches; want some and 1", st.Fetches(), st.ManifestFetches)
	}
	agenttest.WaitConsole(t, res.Console, fmt.Sprintf("BASEFS-GUEST marker-written offset=%d", markerOff), time.Second)

	// The guest powers off (on_poweroff destroy): the domain stays defined, shut off.
	inst := waitState(t, e, c1, "shutoff")
	if inst.Image != d || inst.View != res.View || inst.Disk != filepath.Join(e.Instances, c1, "disk") || inst.Allocated <= 0 || inst.DiskSize != agent.GiB {
		t.Fatalf("show: %+v", inst)
	}
	want := []byte("BASEFS-MARKER " + marker)
	if got := agenttest.ReadAt(t, inst.Disk, markerOff, int64(len(want))); !bytes.Equal(got, want) {
		t.Fatalf("overlay at %d: %q, want %q", markerOff, got, want)
	}
	if got := agenttest.FileSHA256(t, filepath.Join(e.Mount, img.Digest)); got != img.SHA256 {
		t.Fatalf("the base changed: sha256 %s, want %s", got, img.SHA256)
	}

	// The ID in use: refused, nothing touched.
	before, _ := os.Stat(inst.Disk)
	_, err := e.Agent.Spawn(ctx, e.SpawnRequest(c1, img, agent.GiB, markerOff, marker))
	if !errors.Is(err, agent.ErrExists) {
		t.Fatalf("spawn of %s again: %v; want ErrExists", c1, err)
	}
	t.Logf("spawn of an ID in use: %v", err)
	after, err := os.Stat(inst.Disk)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || !agenttest.DomainExists(t, agent.DomainName(c1)) {
		t.Fatalf("the first instance was touched: %v", err)
	}

	// Warm: the second instance of the image fetches nothing.
	st0 := e.Stats()
	_, warm := spawnAndBoot(t, e, e.SpawnRequest(c2, img, agent.GiB, markerOff, marker+"b"), img)
	if st := e.Stats(); st.Fetches() != st0.Fetches() || st.ManifestFetches != st0.ManifestFetches {
		t.Errorf("warm spawn fetched: chunks %d → %d, manifests %d → %d", st0.Fetches(), st.Fetches(), st0.ManifestFetches, st.ManifestFetches)
	}
	t.Logf("spawn → running: cold %.2fs, warm %.2fs", cold.running.Seconds(), warm.running.Seconds())
	t.Logf("spawn → first console line: cold %.2fs, warm %.2fs", cold.firstLine.Seconds(), warm.firstLine.Seconds())
	t.Logf("spawn → sha256 line (whole image read): cold %.2fs, warm %.2fs", cold.sha.Seconds(), warm.sha.Seconds())
	t.Logf("cold spawn steps (s): %+v", res.Seconds)

	// The cache manager's view: which instances use which image.
	used, err := agent.InUseImages(e.Instances)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) != 1 || !slices.Equal(used[d], []string{c1, c2}) {
		t.Fatalf("InUseImages: %v; want %s → [%s %s]", used, d.Short(), c1, c2)
	}
	list, err := e.Agent.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.ID)
	}
	if !slices.Contains(ids, c1) || !slices.Contains(ids, c2) {
		t.Fatalf("list: %v; want %s and %s", ids, c1, c2)
	}

	// Terminate (a shut-off domain): domain and directory go, the base stays.
	tr, err := e.Agent.Terminate(ctx, c1)
	if err != nil || !tr.Existed || tr.Domain == "" || tr.Dir == "" {
		t.Fatalf("terminate %s: %+v, %v", c1, tr, err)
	}
	e.NoLeftovers(t, c1)
	names, err := os.ReadDir(e.Mount)
	if err != nil || !slices.ContainsFunc(names, func(n os.DirEntry) bool { return n.Name() == img.Digest }) {
		t.Fatalf("the base is no longer listed in the mount: %v %v", names, err)
	}
	if used, _ := agent.InUseImages(e.Instances); !slices.Equal(used[d], []string{c2}) {
		t.Fatalf("InUseImages after terminate: %v", used)
	}
	tr, err = e.Agent.Terminate(ctx, c1)
	if err != nil || tr.Existed {
		t.Fatalf("terminate of a terminated instance: %+v, %v; want success, existed=false", tr, err)
	}
	t.Logf("terminate again: %s", tr.Message)
	if _, err := e.Agent.Show(ctx, c1); !errors.Is(err, agent.ErrNoInstance) {
		t.Fatalf("show of a terminated instance: %v; want ErrNoInstance", err)
	}

	// Spawn again, same ID, a disk exactly the image's size (the view is the image itself);
	// then terminate it while it runs.
	res, err = e.Agent.Spawn(ctx, e.SpawnRequest(c1, img, img.Size, img.Size-512, marker))
	if err != nil {
		t.Fatalf("spawn again: %v", err)
	}
	if res.View != img.Digest || res.State != "running" {
		t.Fatalf("spawn again: view %s state %s; want the image itself, running", res.View, res.State)
	}
	agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST boot", bootTimeout)
	tr, err = e.Agent.Terminate(ctx, c1)
	if err != nil || tr.State != "running" {
		t.Fatalf("terminate of a running instance: %+v, %v", tr, err)
	}
	e.NoLeftovers(t, c1)
	if got := agenttest.FileSHA256(t, filepath.Join(e.Mount, img.Digest)); got != img.SHA256 {
		t.Fatalf("the base changed: sha256 %s, want %s", got, img.SHA256)
	}
}

// TestBIOSBoot: without a kernel the domain boots from its disk (the test image holds no boot
// loader, so the BIOS keeps looking; the domain runs). Terminate destroys it.
func TestBIOSBoot(t *testing.T) {
	e := agenttest.New(t)
	ctx := context.Background()
	img := e.Import(5, 1<<20, 0)
	id := e.ID("bios")
	req := e.SpawnRequest(id, img, img.Size, 0, "")
	req.Kernel, req.Initrd, req.Cmdline = "", "", ""
	res, err := e.Agent.Spawn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "running" || res.View != img.Digest {
		t.Fatalf("spawn: %+v", res)
	}
	b, err := os.ReadFile(filepath.Join(res.Dir, agent.XMLFile))
	if err != nil || !bytes.Contains(b, []byte(`<boot dev="hd">`)) || bytes.Contains(b, []byte("<kernel>")) {
		t.Fatalf("libvirt.xml: %v\n%s", err, b)
	}
	tr, err := e.Agent.Terminate(ctx, id)
	if err != nil || tr.State != "running" || !strings.Contains(tr.Message, "destroyed and undefined") {
		t.Fatalf("terminate: %+v, %v", tr, err)
	}
	e.NoLeftovers(t, id)
}
