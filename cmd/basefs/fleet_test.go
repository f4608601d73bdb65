package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/peer"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// The fleet tests: scripts/fleet.sh makes hosts as network namespaces on a bridge, each its own
// basefs daemon (this test's binary), state and mount, reading a real Ceph RGW through the
// shaped tier link, with the peer tier on.

var benchOnce struct {
	sync.Once
	err error
}

// fleet is a running scripts/fleet.sh fleet.
type fleet struct {
	t              *testing.T
	env            []string
	dir            string
	mounts, states []string
	ips            []string
	script         string
}

// run runs fleet.sh with args and returns its stdout.
func (f *fleet) run(args ...string) string {
	f.t.Helper()
	cmd := exec.Command(f.script, args...)
	cmd.Env = f.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("fleet.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func sha256File(p string) ([32]byte, error) {
	var s [32]byte
	fh, err := os.Open(p)
	if err != nil {
		return s, err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return s, fmt.Errorf("read %s: %w", p, err)
	}
	h.Sum(s[:0])
	return s, nil
}

// fleetUp starts n hosts whose shared tier is the s3:// location url (RGW behind a link of
// tierBits/s) and whose Glance is glanceURL, and takes them down when the test ends.
func fleetUp(t *testing.T, n int, url string, tierBits int64, glanceURL string) *fleet {
	t.Helper()
	testenv.NeedBinary(t, "ip", "tc", "nsenter", "fusermount3")
	bin := filepath.Dir(basefsBin)
	benchOnce.Do(func() {
		out, err := exec.Command("go", "build", "-tags=netgo,osusergo", "-o", bin+"/", "../basefs-bench").CombinedOutput()
		if err != nil {
			benchOnce.err = fmt.Errorf("build basefs-bench: %v\n%s", err, out)
		}
	})
	if benchOnce.err != nil {
		t.Fatal(benchOnce.err)
	}
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	f := &fleet{t: t, dir: filepath.Join(t.TempDir(), "fleet")}
	f.env = append(os.Environ(), "BASEFS_FLEET_DIR="+f.dir, "BASEFS_FLEET_BIN="+bin,
		fmt.Sprintf("BASEFS_FLEET_PREFIX=t%d", pid%100000), fmt.Sprintf("BASEFS_FLEET_NET=10.251.%d", pid%250),
		"BASEFS_FLEET_ORIGIN="+url, "BASEFS_FLEET_TIER_URL="+os.Getenv("AWS_ENDPOINT_URL"),
		fmt.Sprintf("BASEFS_FLEET_TIER_RATE=%d", tierBits), "BASEFS_FLEET_PEER_TIMEOUT=1s",
		// a lookup of a name the host does not know lists Glance again at once
		"BASEFS_FLEET_GLANCE_URL="+glanceURL, "BASEFS_FLEET_ARGS=--glance-list-min-interval=0")
	f.script = filepath.Join(repo, "scripts", "fleet.sh")
	t.Cleanup(func() {
		if t.Failed() {
			for i := range f.states {
				b, _ := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("h%d", i+1), "log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("host %d's log ends:\n%s", i+1, b)
			}
		}
		f.run("down")
	})
	start := time.Now()
	for _, line := range strings.Split(f.run("up", fmt.Sprint(n)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "FLEET_MOUNTS":
			f.mounts = strings.Fields(v)
		case "FLEET_STATES":
			f.states = strings.Fields(v)
		case "FLEET_IPS":
			f.ips = strings.Fields(v)
		}
	}
	if len(f.mounts) != n || len(f.states) != n {
		t.Fatalf("fleet.sh up %d: %d mounts, %d states", n, len(f.mounts), len(f.states))
	}
	f.waitMembers(n)
	t.Logf("fleet of %d up in %s", n, time.Since(start).Round(time.Millisecond))
	return f
}

// status is host i's status.
func (f *fleet) status(i int) *control.Status {
	f.t.Helper()
	var st control.Status
	out := mustBasefs(f.t, "status", "--state", f.states[i], "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

// waitMembers waits until every host sees n members.
func (f *fleet) waitMembers(n int) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := range f.states {
		for {
			var st control.Status
			out, _, code := basefs(f.t, "status", "--state", f.states[i], "--json")
			if code == 0 { // else the daemon is starting
				if err := json.Unmarshal([]byte(out), &st); err != nil || st.Peers == nil {
					f.t.Fatalf("host %d: no peer tier in its status (%v)", i+1, err)
				}
				if st.Peers.Members == n {
					break
				}
			}
			if time.Now().After(deadline) {
				f.t.Fatalf("host %d sees %+v, want %d members", i+1, st.Peers, n)
			}
			time.Sleep(100 * time.Millisecond) // gossip has no signal a client can wait on
		}
	}
}

// readAll reads image digest through the mounts of hosts (indexes) at once and checks every
// byte; it returns the first error.
func (f *fleet) readAll(hosts []int, digest string, want [32]byte) error {
	errs := make(chan error, len(hosts))
	for _, i := range hosts {
		go func() {
			got, err := sha256File(filepath.Join(f.mounts[i], digest))
			if err == nil && got != want {
				err = fmt.Errorf("host %d read other bytes", i+1)
			}
			errs <- err
		}()
	}
	var first error
	for range hosts {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// peerSum sums a peer counter over hosts.
func (f *fleet) peerSum(hosts []int, get func(*control.PeerState) int64) (sum int64) {
	for _, i := range hosts {
		sum += get(f.status(i).Peers)
	}
	return sum
}

// bytesFrom sums, over hosts, the bytes their origins whose names start with prefix served.
func (f *fleet) bytesFrom(hosts []int, prefix string) int64 {
	return f.originSum(hosts, prefix, func(o cache.OriginSnapshot) int64 { return o.Bytes })
}

// manifestsFrom sums, over hosts, the manifests their origins whose names start with prefix
// served.
func (f *fleet) manifestsFrom(hosts []int, prefix string) int64 {
	return f.originSum(hosts, prefix, func(o cache.OriginSnapshot) int64 { return o.Manifests })
}

func (f *fleet) originSum(hosts []int, prefix string, get func(cache.OriginSnapshot) int64) (sum int64) {
	for _, i := range hosts {
		for _, o := range f.status(i).Stats.Origins {
			if strings.HasPrefix(o.Origin, prefix) {
				sum += get(o)
			}
		}
	}
	return sum
}

// publishImage makes a fresh image of size bytes, publishes it to url and returns its digest
// and content hash.
func publishImage(t *testing.T, dir, url string, size int, seed uint64) (string, [32]byte) {
	img, want := makeImage(t, dir, size, seed)
	build := filepath.Join(dir, fmt.Sprint("build", seed))
	digest := importMiB(t, build, img)
	mustBasefs(t, "publish", "--state", build, "--to", url, digest)
	return digest, want
}

// TestFleetPeers: 4 hosts read fresh images at once. With peers the tier serves each chunk
// about once (≤ 1.1× the unique bytes; without peers it would be 4×); a peer that lies is
// refused and its chunks come from elsewhere; a peer killed in the middle of the reads costs
// the others no error.
func TestFleetPeers(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	url, tier := s3Tier(t)
	ep := glancetest.Start(t)
	dir := t.TempDir()
	const n, size = 4, 24 << 20 // 24 chunks of 1 MiB
	f := fleetUp(t, n, url, 200_000_000, ep)
	all := []int{0, 1, 2, 3}

	t.Run("bytes", func(t *testing.T) {
		digest, want := publishImage(t, dir, url, size, 51)
		start := time.Now()
		if err := f.readAll(all, digest, want); err != nil {
			t.Fatal(err)
		}
		tier := f.bytesFrom(all, "s3://")
		peers := f.bytesFrom(all, "peers(")
		t.Logf("%d hosts read %d MiB in %s: from the tier %.2f×, between peers %.2f× the unique bytes",
			n, size>>20, time.Since(start).Round(time.Millisecond), float64(tier)/size, float64(peers)/size)
		if float64(tier) > 1.1*size || tier < size {
			t.Errorf("the tier served %d bytes for %d unique: want at most 1.1×", tier, size)
		}
		if peers < (n-1)*size*9/10 {
			t.Errorf("peers served %d bytes; want about %d (each host's copy of what others own)", peers, (n-1)*size)
		}
	})

	t.Run("forged", func(t *testing.T) {
		// A member that sends bytes that are not the chunk: the real daemons cannot be made
		// to lie, so it is a peer.Node of this process on the bridge, with the fleet's secret.
		secret, err := os.ReadFile(filepath.Join(f.dir, "secret"))
		if err != nil {
			t.Fatal(err)
		}
		bridge := f.ips[0][:strings.LastIndex(f.ips[0], ".")] + ".1"
		liar, err := peer.Start(peer.Config{Addr: bridge + ":0", Name: "liar", Join: []string{f.ips[0] + ":7946"},
			Secret: secret, Timeout: time.Second, Owners: 1, MaxManifest: peer.DefaultMaxManifest})
		if err != nil {
			t.Fatal(err)
		}
		defer liar.Close()
		var lies sync.Map
		liar.SetSources(peer.Sources{Chunk: func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
			lies.Store(d, true)
			return chunkstore.UnverifiedChunk(d, []byte("not the chunk")), nil
		}})
		f.waitMembers(n + 1)
		digest, want := publishImage(t, dir, url, size, 52)
		corruptOf := func(p *control.PeerState) int64 { return p.Corrupt }
		corruptBefore := f.peerSum(all, corruptOf)
		if err := f.readAll(all, digest, want); err != nil {
			t.Fatal(err)
		}
		corrupt := f.peerSum(all, corruptOf)
		told := 0
		lies.Range(func(any, any) bool { told++; return true })
		if told == 0 || corrupt-corruptBefore < int64(told) {
			t.Fatalf("the liar was asked for %d chunks and %d were refused: the test proves nothing", told, corrupt-corruptBefore)
		}
		t.Logf("the liar answered %d requests; the hosts refused %d forged chunks and read every byte right", told, corrupt-corruptBefore)
	})

	t.Run("glance", func(t *testing.T) {
		// A raw Glance image published with its manifest alone in the tier: every host reads
		// it by nova's name at once; its chunks come from Glance by range, once, through
		// their owners, and its manifest from the tier once, through its owner.
		const gsize = 8 << 20 // 128 chunks of 64 KiB
		start := time.Now()
		id, data := glanceImage(t, dir, 54, gsize, 0)
		out := mustBasefs(t, "publish", "--state", filepath.Join(dir, "glance-build"), "--to", "dir://"+filepath.Join(dir, "glance-pub"),
			"--glance-endpoint", ep, "glance://"+id)
		_, prop, _ := strings.Cut(strings.TrimSpace(out), glance.ManifestProperty+"=")
		d, err := chunkstore.ParseDigest(strings.Fields(prop + " ")[0])
		if err != nil {
			t.Fatalf("publish printed no manifest digest: %v\n%s", err, out)
		}
		build, err := local.Open(filepath.Join(dir, "glance-build"), local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := build.GetManifest(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tier.PutManifest(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		counts := func() (glanceBytes, tierBytes, tierManifests, peerManifests int64) {
			return f.bytesFrom(all, "glance+"), f.bytesFrom(all, "s3://"), f.manifestsFrom(all, "s3://"), f.manifestsFrom(all, "peers(")
		}
		g0, t0, tm0, pm0 := counts()
		t.Logf("uploaded and published in %s", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := f.readAll(all, glanceref.NovaName(id), sha256.Sum256(data)); err != nil {
			t.Fatal(err)
		}
		g1, t1, tm1, pm1 := counts()
		t.Logf("read in %s", time.Since(start).Round(time.Millisecond))
		t.Logf("%d hosts read a %d MiB Glance image: Glance served %.2f× its bytes, the tier %d chunk bytes; manifests: %d from the tier, %d from peers",
			n, gsize>>20, float64(g1-g0)/gsize, t1-t0, tm1-tm0, pm1-pm0)
		if g1-g0 < gsize || float64(g1-g0) > 1.1*gsize || t1 != t0 {
			t.Errorf("Glance served %d bytes and the tier %d for a %d-byte image: want Glance about once (≤ 1.1×), the tier none", g1-g0, t1-t0, gsize)
		}
		if tm1-tm0 != 1 || pm1-pm0 != n-1 {
			t.Errorf("the manifest came %d times from the tier and %d from peers; want once from the tier (to its owner), %d from peers", tm1-tm0, pm1-pm0, n-1)
		}
	})

	t.Run("killed", func(t *testing.T) {
		digest, want := publishImage(t, dir, url, size, 53)
		tierBefore := f.bytesFrom(all[:3], "s3://")
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- f.readAll(all[:3], digest, want) }()
		// Host 4 owns a quarter of the chunks; it dies while the others read.
		time.Sleep(500 * time.Millisecond)
		f.run("kill", "4")
		if err := <-done; err != nil {
			t.Fatalf("a reader saw an error after a peer was killed: %v", err)
		}
		tier := f.bytesFrom(all[:3], "s3://")
		if failed := f.peerSum(all[:3], func(p *control.PeerState) int64 { return p.AskFailed }); failed == 0 {
			t.Error("no request to the killed host failed: the kill came too late to prove anything")
		}
		t.Logf("3 hosts read %d MiB with host 4 killed after 0.5 s: %s, the tier served %.2f× the unique bytes",
			size>>20, time.Since(start).Round(time.Millisecond), float64(tier-tierBefore)/size)
	})
}

// Peer settings that mean nothing are refused before anything is mounted, naming the flag.
func TestPeerFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	short, long := filepath.Join(dir, "short"), filepath.Join(dir, "long")
	os.WriteFile(short, []byte("too short"), 0o600)
	os.WriteFile(long, make([]byte, 5000), 0o600)
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("a fleet secret of enough bytes"), 0o600)
	mnt := filepath.Join(dir, "mnt")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--peer-addr", "127.0.0.1:7947"}, "--peer-secret-file"},
		{[]string{"--peer-join", "127.0.0.1:7946"}, "--peer-addr"},
		{[]string{"--peer-addr", "0.0.0.0:7947", "--peer-secret-file", good}, "concrete IP"},
		{[]string{"--peer-addr", "host1", "--peer-secret-file", good}, "IP:PORT"},
		{[]string{"--peer-addr", "127.0.0.1:7947", "--peer-secret-file", short}, "at least 16"},
		{[]string{"--peer-addr", "127.0.0.1:7947", "--peer-secret-file", long}, "more than 4096"},
		{[]string{"--peer-addr", "127.0.0.1:7947", "--peer-secret-file", filepath.Join(dir, "absent")}, "--peer-secret-file"},
		{[]string{"--peer-addr", "127.0.0.1:7947", "--peer-secret-file", good, "--peer-timeout", "0"}, "--peer-timeout"},
		{[]string{"--peer-addr", "127.0.0.1:7947", "--peer-secret-file", good, "--peer-owners", "0"}, "--peer-owners"},
	} {
		args := append(append([]string{"mount", "--state", filepath.Join(dir, "state")}, c.args...), mnt)
		if _, errOut, code := basefs(t, args...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("basefs %v: exit %d, %q; want exit 2 naming %s", c.args, code, errOut, c.want)
		}
	}
}
