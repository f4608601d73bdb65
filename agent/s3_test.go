package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
)

// TestBootStormFromRGW: an image published to a real Ceph RGW; 4 hosts (each its own daemon,
// empty state, mount and instances directory, origins: an empty dir:// then s3://) boot the
// test guest from it at the same time. Every guest's console checksum is right, every chunk a
// host read came from RGW at most once per host, and nothing from anywhere else.
func TestBootStormFromRGW(t *testing.T) {
	agenttest.Need(t)
	for k, v := range s3test.Start(t) {
		os.Setenv(k, v) // the daemons inherit the AWS_* environment (t.Setenv forbids parallel subtests)
	}
	_, url := s3test.Config(t)
	const hosts = 4
	envs := make([]*agenttest.Env, hosts)
	for i := range envs {
		envs[i] = agenttest.NewWith(t, "--origin", url, "--fill-rate", "0", "--profile-window", "0")
	}
	img := envs[0].Import(81, 8<<20, 2<<20) // 8 MiB of data, a 2 MiB hole
	if out, err := exec.Command(agenttest.Basefs(t), "publish", "--state", envs[0].Origin, "--to", url, img.Digest).CombinedOutput(); err != nil {
		t.Fatalf("publish to %s: %v\n%s", url, err, out)
	}
	// Only RGW has the image now: every host's dir:// origin is empty.
	for _, d := range []string{"chunks", "manifests", "profiles"} {
		os.RemoveAll(filepath.Join(envs[0].Origin, d))
	}
	var mu sync.Mutex
	var last time.Duration
	t.Run("storm", func(t *testing.T) {
		for i, e := range envs {
			t.Run(fmt.Sprint("host", i), func(t *testing.T) {
				t.Parallel()
				id := e.ID(fmt.Sprint("storm", i)) // libvirt domain names are global
				_, bt := spawnAndBoot(t, e, e.SpawnRequest(id, img, agent.GiB, 1<<20+7, "storm"), img)
				mu.Lock()
				last = max(last, bt.firstLine)
				mu.Unlock()
			})
		}
	})
	var fromRGW, other int64
	for i, e := range envs {
		st := e.Stats()
		for _, o := range st.Origins {
			if strings.HasPrefix(o.Origin, "s3://") {
				fromRGW += o.Bytes
				if o.Fetches > 8 {
					t.Errorf("host %d fetched %d chunks from RGW; the image has 8 (each at most once)", i, o.Fetches)
				}
			} else {
				other += o.Bytes
			}
		}
	}
	if other != 0 || fromRGW == 0 {
		t.Fatalf("bytes from RGW %d, from other origins %d; want all from RGW", fromRGW, other)
	}
	t.Logf("boot storm, %d hosts from RGW: last first console line after %.2fs; bytes from RGW %d (image data %d per host), from other origins %d",
		hosts, last.Seconds(), fromRGW, 8<<20, other)
}
