package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/daemon/control"
)

func gcNow(t *testing.T, e *agenttest.Env) *cache.GCReport {
	t.Helper()
	rep, err := control.NewClient(control.SocketFromState(e.State)).GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestCleanupNeverRemovesAnInstancesImage: an image backing a real instance is kept however
// old; after terminate and the minimum age it goes.
func TestCleanupNeverRemovesAnInstancesImage(t *testing.T) {
	e := agenttest.NewWith(t, "--remove-unused-original-min-age", "3600", "--manager-interval", "1h", "--fill-rate", "0")
	img := e.Import(21, 3<<20, 1<<20)
	id := e.ID("gc")
	spawnAndBoot(t, e, e.SpawnRequest(id, img, agent.GiB, img.Size, "m"), img)
	// Older than the minimum age: utime through the mount, as nova ages a base.
	age := func() {
		old := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(filepath.Join(e.Mount, img.Digest), old, old); err != nil {
			t.Fatal(err)
		}
	}
	age()
	rep := gcNow(t, e)
	if len(rep.Images) != 1 || rep.Images[0].Action != "keep" || !strings.Contains(strings.Join(rep.Images[0].Users, ","), id) {
		t.Fatalf("cleanup with instance %s on the image: %+v; want kept, used by %s", id, rep.Images, id)
	}
	if _, err := e.Agent.Terminate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	age()
	rep = gcNow(t, e)
	if len(rep.Images) != 1 || rep.Images[0].Action != "remove" || rep.ChunksRemoved != 3<<20/chunkstore.DefaultChunkSize {
		t.Fatalf("cleanup after terminate and the minimum age: %+v, %d chunks removed", rep.Images, rep.ChunksRemoved)
	}
}

// TestBootProfileSpeedsColdBoot: the first boot records the image's boot profile; published
// with the image, it makes a fresh host fetch those chunks before the guest asks. Logs the
// time to the guest's first console line and to its checksum line, with and without it.
func TestBootProfileSpeedsColdBoot(t *testing.T) {
	e1 := agenttest.NewWith(t, "--profile-window", "20s", "--fill-rate", "0")
	img := e1.Import(22, 24<<20, 8<<20)
	_, first := spawnAndBoot(t, e1, e1.SpawnRequest(e1.ID("p1"), img, agent.GiB, img.Size, "m"), img)
	prof := filepath.Join(e1.State, "profiles", img.Digest)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(prof); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no boot profile recorded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Host 2 gets the image published with its profile; host 3 without.
	withProf := agenttest.NewWith(t, "--fill-rate", "0")
	without := agenttest.NewWith(t, "--fill-rate", "0")
	publish := func(state, to string, origin ...string) {
		args := []string{"publish", "--state", state, "--to", "dir://" + to}
		for _, o := range origin {
			args = append(args, "--origin", "dir://"+o)
		}
		if out, err := exec.Command(agenttest.Basefs(t), append(args, img.Digest)...).CombinedOutput(); err != nil {
			t.Fatalf("publish: %v\n%s", err, out)
		}
	}
	publish(e1.State, withProf.Origin, e1.Origin)
	publish(e1.Origin, without.Origin)
	if _, err := os.Stat(filepath.Join(withProf.Origin, "profiles", img.Digest)); err != nil {
		t.Fatalf("the profile was not published: %v", err)
	}
	_, cold := spawnAndBoot(t, without, without.SpawnRequest(without.ID("p3"), img, agent.GiB, img.Size, "m"), img)
	_, profiled := spawnAndBoot(t, withProf, withProf.SpawnRequest(withProf.ID("p2"), img, agent.GiB, img.Size, "m"), img)
	st, err := control.NewClient(control.SocketFromState(withProf.State)).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Manager == nil || st.Manager.ProfileChunks == 0 || !strings.Contains(withProf.DaemonLog(), "prefetching boot profile") {
		t.Fatalf("host 2 did not prefetch the profile: %+v\n%s", st.Manager, withProf.DaemonLog())
	}
	t.Logf("boot profile: %d chunks prefetched", st.Manager.ProfileChunks)
	t.Logf("first boot (recording):   first console line %.2fs, checksum line %.2fs", first.firstLine.Seconds(), first.sha.Seconds())
	t.Logf("cold boot without profile: first console line %.2fs, checksum line %.2fs", cold.firstLine.Seconds(), cold.sha.Seconds())
	t.Logf("cold boot with profile:    first console line %.2fs, checksum line %.2fs", profiled.firstLine.Seconds(), profiled.sha.Seconds())
}
