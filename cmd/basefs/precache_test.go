package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// precacheRate is the daemon's --prefetch-rate in TestPrecacheUtimeAndPrefetch: slow enough to
// measure its bound over a few seconds, fast enough for CI.
const precacheRate = 8 << 20

// TestPrecacheUtimeAndPrefetch: nova's cache_image on a base it finds present (a utime to now)
// makes an image no instance uses wholly local in the background, at --prefetch-rate, with no
// read: a raw Glance image read lazily (nova's name) and a manifest image from a dir:// origin.
// A utime of an image an instance overlay uses (nova's image cache manager does that to every
// base in use) and a utime to an explicit time (ageing) start nothing; nor does nova's spawn
// (a utime, then the overlay, within --precache-delay). basefs prefetch fills an image in use;
// a second request joins the running fill. Bytes over time stay under the rate.
func TestPrecacheUtimeAndPrefetch(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ep := glancetest.Start(t)
	dir := t.TempDir()
	const glanceData, glanceZeros = 12 << 20, 4 << 20
	gid, _ := glanceImage(t, dir, 2501, glanceData, glanceZeros)
	origin := filepath.Join(dir, "origin")
	var digests []string
	for i, n := range []int{8 << 20, 2 << 20, 16 << 20, 2 << 20} { // in use, aged, rate, spawned
		p, _ := makeImage(t, dir, n, uint64(2510+i))
		digests = append(digests, lastLine(mustBasefs(t, "import", "--state", origin, p)))
	}
	inUse, aged, paced, spawned := digests[0], digests[1], digests[2], digests[3]
	inst := filepath.Join(dir, "instances")
	metricsPort := freePort(t)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep,
		"--origin", "dir://"+origin, "--instances-path", inst, "--fill-rate", "0", "--scrub-rate", "0",
		"--profile-window", "0", "--prefetch-rate", strconv.Itoa(precacheRate), "--precache-delay", "1s", "--glance-list-min-interval", "0",
		"--metrics-addr", "127.0.0.1:"+strconv.Itoa(metricsPort))

	// An instance overlay backed by the in-use image (created without reading its backing file).
	overlay := func(uuid, img string) {
		os.MkdirAll(filepath.Join(inst, uuid), 0o755)
		if out, err := exec.Command("qemu-img", "create", "-q", "-u", "-f", "qcow2", "-F", "raw", "-b", filepath.Join(d.mnt, img),
			filepath.Join(inst, uuid, "disk"), "4M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v\n%s", err, out)
		}
	}
	overlay("5f0c3c8e-25b0-4a53-9d7e-8a6f4d1c2b3a", inUse)

	// 1. nova's cache_image: os.path.exists, then utime(path, None), on the Glance image's nova name.
	nova := filepath.Join(d.mnt, glanceref.NovaName(gid))
	if _, err := os.Stat(nova); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := unix.Utimes(nova, nil); err != nil {
		t.Fatalf("utime(%s, NULL): %v", nova, err)
	}
	st := d.status()
	if len(st.Fills) != 1 || st.Fills[0].Reason != cache.FillPrecache || !st.Fills[0].Running || !st.Fills[0].Waiting {
		t.Fatalf("after nova's utime of an unused image: fills %+v; want one precache waiting its delay", st.Fills)
	}
	gfill := waitFillEnd(t, d, st.Fills[0].Image)
	took := time.Since(t0)
	digest := waitDigest(t, d, gid) // the whole-image check passed: a manifest, a digest
	st = d.status()
	_, fromGlance, _ := glanceOrigin(st)
	t.Logf("precache of a %d MiB raw Glance image (%d MiB data) at %d MiB/s: %.1f s, %d bytes from Glance, fill %+v",
		(glanceData+glanceZeros)>>20, glanceData>>20, precacheRate>>20, took.Seconds(), fromGlance, gfill)
	if !gfill.Complete || st.Stats.Reads != 0 || st.Stats.BytesRead != 0 {
		t.Fatalf("precache: fill %+v, %d reads (%d bytes) served; want complete with no read", gfill, st.Stats.Reads, st.Stats.BytesRead)
	}
	if fromGlance < glanceData || fromGlance > glanceData+glanceZeros {
		t.Errorf("precache took %d bytes from Glance for %d bytes of data", fromGlance, glanceData)
	}
	wantLocal(t, d, digest, glanceData)

	// 2. The image an instance uses: nova's periodic utime of it fetches nothing.
	if err := unix.Utimes(filepath.Join(d.mnt, inUse), nil); err != nil {
		t.Fatal(err)
	}
	// 3. A utime to an explicit time ages an image: it fetches nothing either.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(d.mnt, aged), old, old); err != nil {
		t.Fatal(err)
	}
	st = d.status()
	if len(st.Fills) != 1 || st.Manager.PrecacheInUse != 1 || st.Manager.PrecacheAsked != 2 {
		t.Fatalf("utime of an image in use and an explicit utime: fills %+v, manager %+v; want no new fill, one in use", st.Fills, st.Manager)
	}
	for _, im := range st.Images {
		if s := im.Digest.String(); (s == inUse || s == aged) && im.Present != 0 {
			t.Errorf("image %s: %d chunks local after a utime that must fetch nothing", s, im.Present)
		}
	}

	// 4. basefs prefetch of the image in use (an explicit request): wholly local. A second
	// request while it runs joins it.
	var fis []cache.FillInfo
	out := mustBasefs(t, "prefetch", "--base", d.mnt, "--json", inUse, inUse)
	if err := json.Unmarshal([]byte(out), &fis); err != nil || len(fis) != 2 {
		t.Fatalf("prefetch --json: %v\n%s", err, out)
	}
	if fis[0].Reason != cache.FillPrefetch || !fis[1].Running || !fis[1].Started.Equal(fis[0].Started) {
		t.Fatalf("two prefetches of one image: %+v; want the second to join the first", fis)
	}
	if fi := waitFillEnd(t, d, fis[0].Image); !fi.Complete || fi.Chunks != 128 || fi.ToFetch != 128 {
		t.Fatalf("prefetch of an 8 MiB image: %+v", fi)
	}
	wantLocal(t, d, inUse, 8<<20)
	out = mustBasefs(t, "prefetch", "--base", d.mnt, "--wait", "--json", inUse) // nothing left to fetch
	if err := json.Unmarshal([]byte(out), &fis); err != nil || len(fis) != 1 || !fis[0].Complete || fis[0].ToFetch != 0 {
		t.Fatalf("prefetch --wait of a local image: %v\n%s", err, out)
	}
	if m := d.status().Manager; m.PrecacheStarted != 3 || m.Prefetches != 3 {
		t.Errorf("precache and prefetch fills started %d, prefetches %d; want 3 and 3", m.PrecacheStarted, m.Prefetches)
	}

	// 5. The rate bound: a 16 MiB image, sampled while it is filled. A loaded machine only
	// makes it slower; the bound is what was fetched ≤ rate × elapsed + one chunk.
	sock, _ := control.SocketFromMount(d.mnt)
	cl := control.NewClient(sock)
	t0 = time.Now()
	mustBasefs(t, "prefetch", "--base", d.mnt, paced)
	var samples []string
	var last cache.FillInfo
	for last.Running || last.Image.String() != paced {
		time.Sleep(200 * time.Millisecond)
		s, err := cl.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, fi := range s.Fills {
			if fi.Image.String() == paced {
				last = fi
			}
		}
		el := time.Since(t0)
		samples = append(samples, strconv.Itoa(int(el/time.Millisecond))+"ms:"+strconv.Itoa(int(last.Bytes>>10))+"K")
		if len(samples) == 1 {
			m := metrics(t, metricsPort)
			if !strings.Contains(m, "basefs_fills_running 1") || !strings.Contains(m, `basefs_fill_fetched_bytes{image="`+paced+`",reason="prefetch"}`) {
				t.Errorf("metrics during a fill lack it:\n%s", grepLines(m, "fill"))
			}
		}
		if bound := int64(el.Seconds()*precacheRate) + 64<<10; last.Bytes > bound {
			t.Fatalf("after %s the fill had fetched %d bytes; the rate allows %d", el, last.Bytes, bound)
		}
		if el > time.Minute {
			t.Fatalf("the paced fill did not end within a minute: %+v", last)
		}
	}
	took = time.Since(t0)
	defer t.Logf("rate bound %d MiB/s: 16 MiB filled in %.2f s (%.1f MiB/s); samples %s", precacheRate>>20, took.Seconds(),
		16/took.Seconds(), strings.Join(samples, " "))
	if !last.Complete || took < time.Duration(float64(16<<20-64<<10)/precacheRate*float64(time.Second)) {
		t.Fatalf("paced fill: %+v in %s", last, took)
	}

	if m := metrics(t, metricsPort); !strings.Contains(m, `basefs_manager_total{what="precache_fills_started"} 4`) || !strings.Contains(m, "basefs_fills_running 0") {
		t.Errorf("metrics after the fills:\n%s", grepLines(m, "fill"))
	}

	// 6. nova's spawn: utime to now of the unused base, then at once the overlay on it. The
	// precache waits its delay, finds the image in use, and fetches nothing.
	if err := unix.Utimes(filepath.Join(d.mnt, spawned), nil); err != nil {
		t.Fatal(err)
	}
	overlay("0b6b4d0e-5c1f-4e55-8a57-3c2d1e0f9a8b", spawned)
	var sp cache.FillInfo
	for _, fi := range d.status().Fills {
		if fi.Image.String() == spawned {
			sp = waitFillEnd(t, d, fi.Image)
		}
	}
	if sp.Reason != cache.FillPrecache || sp.Chunks != 0 || !strings.HasPrefix(sp.Stopped, "in use by 0b6b4d0e") {
		t.Errorf("a spawn's utime then overlay: fill %+v; want a precache stopped, nothing fetched", sp)
	}
}

// waitFillEnd waits for image img's fill to end (the daemon answers when it has) and returns
// its last progress.
func waitFillEnd(t *testing.T, d *daemon, img chunkstore.Digest) cache.FillInfo {
	t.Helper()
	sock, err := control.SocketFromMount(d.mnt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	fi, err := control.NewClient(sock).Fill(ctx, img, true)
	if err != nil {
		t.Fatalf("wait for the fill of %s: %v\n%s", img, err, d.log)
	}
	return *fi
}

// wantLocal checks that image digest is wholly local: every chunk present (status) and
// st_blocks of its file at least its data bytes.
func wantLocal(t *testing.T, d *daemon, digest string, dataBytes int64) {
	t.Helper()
	for _, im := range d.status().Images {
		if im.Digest.String() == digest && im.Present != im.Total {
			t.Errorf("image %s: %d/%d chunks local", digest, im.Present, im.Total)
		}
	}
	var s unix.Stat_t
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) { // st_blocks is counted at most once a second
		if err := unix.Stat(filepath.Join(d.mnt, digest), &s); err != nil {
			t.Fatal(err)
		}
		if s.Blocks*512 >= dataBytes || time.Now().After(deadline) {
			break
		}
	}
	if s.Blocks*512 < dataBytes {
		t.Errorf("image %s: st_blocks %d (%d bytes) after its fill; want ≥ %d", digest, s.Blocks, s.Blocks*512, dataBytes)
	}
}

// TestNovaCacheImagePrecaches: nova's own LibvirtDriver.cache_image (what `openstack aggregate
// cache image` reaches on each host) on a base the mount presents finds it present and only
// utimes it; that utime makes the image wholly local, fetched once, before any instance.
func TestNovaCacheImagePrecaches(t *testing.T) {
	e := newNovaEnv(t, 86400, "--fill-rate", "0", "--scrub-rate", "0", "--prefetch-rate", "1000000000", "--precache-delay", "0")
	id, _, _ := e.image(2520, 6<<20, 2<<20)
	r := e.nova("fetch-to-raw", "--image-id", id, "--cache-image")
	if r.Fetched {
		t.Fatal("LibvirtDriver.cache_image downloaded an image the mount presents")
	}
	var fill cache.FillInfo
	for _, fi := range e.d.status().Fills {
		fill = waitFillEnd(t, e.d, fi.Image)
	}
	st := e.d.status()
	_, fromGlance, _ := glanceOrigin(st)
	t.Logf("nova's cache_image: %d bytes from Glance, fill %+v", fromGlance, fill)
	// (nova-driver.py reports the base with qemu-img info after cache_image returned: one read
	// of its header, which is not what fetched the image.)
	if fill.Reason != cache.FillPrecache || !fill.Complete || st.Stats.BytesRead > 1<<20 || st.Manager.PrecacheAsked != 1 {
		t.Fatalf("after nova's cache_image: fill %+v, %d reads (%d bytes), manager %+v; want a complete precache", fill, st.Stats.Reads, st.Stats.BytesRead, st.Manager)
	}
	if fromGlance != 8<<20 {
		t.Errorf("%d bytes from Glance for an 8 MiB image; want it once", fromGlance)
	}
	wantLocal(t, e.d, waitDigest(t, e.d, id), 6<<20)
}

// metrics returns the daemon's Prometheus text.
func metrics(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
