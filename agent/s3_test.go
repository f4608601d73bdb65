package agent_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
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
				if n := int64(8<<20) / chunkstore.DefaultChunkSize; o.Fetches > n {
					t.Errorf("host %d fetched %d chunks from RGW; the image has %d (each at most once)", i, o.Fetches, n)
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

// writeRawImage writes dataBytes pseudo-random bytes (from seed) then zeroBytes zeros to a new
// file in dir and returns it as an Image (no digest: it goes to Glance, not to a basefs state).
func writeRawImage(t *testing.T, dir string, seed uint64, dataBytes, zeroBytes int64) agenttest.Image {
	t.Helper()
	raw := filepath.Join(dir, fmt.Sprintf("glance-image-%d.raw", seed))
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 8)
	for n := int64(0); n < dataBytes; n += 8 {
		binary.LittleEndian.PutUint64(buf, r.Uint64())
		w.Write(buf[:min(8, dataBytes-n)])
	}
	w.Write(make([]byte, zeroBytes))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return agenttest.Image{Size: dataBytes + zeroBytes, SHA256: hex.EncodeToString(h.Sum(nil)), Raw: raw}
}

// stormResult is what one wave of simultaneous boots measured.
type stormResult struct {
	firstLine, sha time.Duration // of the last guest
	glance, rgw    int64         // bytes, summed over hosts
	glanceFetches  []int64       // per host
	rgwFetches     []int64       // per host
	other          int64         // bytes from any other origin
}

// bootStorm boots the test guest from ref on every env at the same time, checking each
// console checksum, and sums the hosts' origin counters.
func bootStorm(t *testing.T, name string, envs []*agenttest.Env, ref string, img agenttest.Image) stormResult {
	t.Helper()
	var mu sync.Mutex
	var r stormResult
	t.Run(name, func(t *testing.T) {
		for i, e := range envs {
			t.Run(fmt.Sprint("host", i), func(t *testing.T) {
				t.Parallel()
				req := e.SpawnRequest(e.ID(fmt.Sprint(name, i)), img, agent.GiB, 1<<20+7, name)
				req.Image = ref
				_, bt := spawnAndBoot(t, e, req, img)
				mu.Lock()
				r.firstLine, r.sha = max(r.firstLine, bt.firstLine), max(r.sha, bt.sha)
				mu.Unlock()
			})
		}
	})
	for _, e := range envs {
		var gf, rf int64
		for _, o := range e.Stats().Origins {
			switch {
			case strings.HasPrefix(o.Origin, "glance+"):
				r.glance += o.Bytes
				gf += o.Fetches
			case strings.HasPrefix(o.Origin, "s3://"):
				r.rgw += o.Bytes
				rf += o.Fetches
			default:
				r.other += o.Bytes
			}
		}
		r.glanceFetches, r.rgwFetches = append(r.glanceFetches, gf), append(r.rgwFetches, rf)
	}
	return r
}

// TestBootStormGlanceViaRGWvsGlanceAlone: a raw image in a real Glance. (A) 4 hosts with only
// Glance boot the test guest from glance://ID at the same time; (B) after `basefs publish
// glance://ID --to s3://…` (which records basefs_manifest on the image), 4 fresh hosts with
// the RGW tier and Glance boot it from glance://ID at the same time: Glance serves them no
// image data, each host fetches each chunk from RGW at most once, every checksum is right.
func TestBootStormGlanceViaRGWvsGlanceAlone(t *testing.T) {
	agenttest.Need(t)
	ep := glancetest.Start(t)
	for k, v := range s3test.Start(t) {
		os.Setenv(k, v) // the daemons and publish inherit the AWS_* environment
	}
	_, url := s3test.Config(t)
	const hosts = 4
	dir := t.TempDir()
	img := writeRawImage(t, dir, 91, 8<<20, 8<<20) // 8 MiB of data, 8 MiB of zeros
	id := glancetest.Upload(t, t.Name(), "raw", "bare", img.Raw)
	ref := "glance://" + id

	// (A) Glance alone.
	envsA := make([]*agenttest.Env, hosts)
	for i := range envsA {
		envsA[i] = agenttest.NewWith(t, "--glance-endpoint", ep, "--fill-rate", "0", "--profile-window", "0")
	}
	a := bootStorm(t, "gstormA", envsA, ref, img)
	if a.glance == 0 || a.rgw != 0 || a.other != 0 {
		t.Errorf("wave A: bytes from Glance %d, RGW %d, other %d; want all from Glance", a.glance, a.rgw, a.other)
	}
	t.Logf("wave A, %d hosts, Glance alone: last first console line %.2fs, last checksum line %.2fs; bytes from Glance %d (%.1f MiB; per-host fetches %v), from RGW %d",
		hosts, a.firstLine.Seconds(), a.sha.Seconds(), a.glance, float64(a.glance)/(1<<20), a.glanceFetches, a.rgw)

	// Publish to a fresh prefix of the RGW tier; Glance records basefs_manifest.
	out, err := exec.Command(agenttest.Basefs(t), "publish", "--state", filepath.Join(dir, "pubstate"),
		"--glance-endpoint", ep, "--to", url, ref).CombinedOutput()
	if err != nil {
		t.Fatalf("publish %s to %s: %v\n%s", ref, url, err, out)
	}
	if !strings.Contains(string(out), "basefs_manifest=") {
		t.Fatalf("publish did not record basefs_manifest:\n%s", out)
	}
	m := regexp.MustCompile(`: (\d+) chunks,`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("publish output without a chunk count:\n%s", out)
	}
	chunks, _ := strconv.ParseInt(string(m[1]), 10, 64)

	// (B) RGW tier in front of Glance.
	envsB := make([]*agenttest.Env, hosts)
	for i := range envsB {
		envsB[i] = agenttest.NewWith(t, "--origin", url, "--glance-endpoint", ep, "--fill-rate", "0", "--profile-window", "0")
	}
	b := bootStorm(t, "gstormB", envsB, ref, img)
	for i := range envsB {
		if b.glanceFetches[i] != 0 {
			t.Errorf("wave B host %d: %d fetches from Glance after publish; want none", i, b.glanceFetches[i])
		}
		if b.rgwFetches[i] > chunks || b.rgwFetches[i] == 0 {
			t.Errorf("wave B host %d: %d chunk fetches from RGW; the image has %d distinct chunks (each at most once)", i, b.rgwFetches[i], chunks)
		}
	}
	if b.glance != 0 || b.other != 0 || b.rgw == 0 {
		t.Errorf("wave B: bytes from Glance %d, RGW %d, other %d; want all from RGW", b.glance, b.rgw, b.other)
	}
	t.Logf("wave B, %d hosts, RGW tier + Glance: last first console line %.2fs, last checksum line %.2fs; bytes from Glance %d, from RGW %d (%.1f MiB; per-host fetches %v, image has %d distinct chunks)",
		hosts, b.firstLine.Seconds(), b.sha.Seconds(), b.glance, b.rgw, float64(b.rgw)/(1<<20), b.rgwFetches, chunks)
	t.Logf("comparison: first console line (last guest) %.2fs Glance alone vs %.2fs via RGW; checksum line %.2fs vs %.2fs; bytes from Glance %d vs %d; bytes from RGW %d vs %d",
		a.firstLine.Seconds(), b.firstLine.Seconds(), a.sha.Seconds(), b.sha.Seconds(), a.glance, b.glance, a.rgw, b.rgw)
}
