package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/daemon/control"
)

// glanceImage writes dataBytes of random data then zeroBytes of zeros and uploads it as raw.
func glanceImage(t *testing.T, dir string, seed uint64, dataBytes, zeroBytes int) (string, []byte) {
	t.Helper()
	data := append(storetest.Data(seed, dataBytes), make([]byte, zeroBytes)...)
	p := filepath.Join(dir, "glance.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return glancetest.Upload(t, t.Name(), "raw", "bare", p), data
}

func ensureGlance(t *testing.T, d *daemon, id string) (*control.GlanceStatus, error) {
	t.Helper()
	sock, err := control.SocketFromMount(d.mnt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return control.NewClient(sock).EnsureGlance(ctx, id)
}

func glanceOrigin(st *control.Status) (fetches, bytes, corrupt int64) {
	for _, o := range st.Stats.Origins {
		if strings.HasPrefix(o.Origin, "glance+") {
			return o.Fetches, o.Bytes, o.Corrupt
		}
	}
	return 0, 0, 0
}

func preadFile(t *testing.T, p string, off int64, n int) ([]byte, error) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	return b, err
}

// waitDigest polls ensure until the image has a digest (background fill or reads completed it).
func waitDigest(t *testing.T, d *daemon, id string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := ensureGlance(t, d, id)
		if err != nil {
			t.Fatalf("ensure glance://%s: %v\n%s", id, err, d.log)
		}
		if st.Digest != nil {
			return st.Digest.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("glance://%s got no digest within 90 s\n%s", id, d.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A raw Glance image with no manifest is read lazily by range: reading 2 chunks fetches about
// 2 chunks, not the image; reading it all completes it (checked against os_hash_value), after
// which <sha1(id)> and <digest> read the same bytes. A second host with only the manifest
// then reads chunks from Glance by range, verified: corruption in Glance → EIO, counted.
func TestGlanceLazyRawThenVerifiedRanges(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	id, data := glanceImage(t, dir, 1, 24<<20, 8<<20)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep, "--fill-rate", "0", "--scrub-rate", "0")
	st, err := ensureGlance(t, d, id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Provisional || st.Digest != nil || st.Name != glanceref.NovaName(id) || st.Size != int64(len(data)) {
		t.Fatalf("ensure: %+v", st)
	}
	nova := filepath.Join(d.mnt, st.Name)
	for _, off := range []int64{3 << 20, 17 << 20} {
		b, err := preadFile(t, nova, off, 1<<20)
		if err != nil || !bytes.Equal(b, data[off:off+1<<20]) {
			t.Fatalf("read %s at %d: %v (bytes equal: %v)", nova, off, err, bytes.Equal(b, data[off:off+1<<20]))
		}
	}
	_, got, _ := glanceOrigin(d.status())
	t.Logf("lazy raw: 2 MiB read, %d bytes taken from Glance (image %d bytes)", got, len(data))
	if got < 2<<20 || got > 4<<20 {
		t.Fatalf("bytes from Glance = %d after reading 2 MiB of a %d-byte image; want about 2 MiB", got, len(data))
	}
	// Reading everything completes the image: whole-image check, manifest, digest.
	if sum := shaFile(t, nova); sum != sha256.Sum256(data) {
		t.Fatal("whole read through the nova name differs from the image")
	}
	digest := waitDigest(t, d, id)
	if sum := shaFile(t, filepath.Join(d.mnt, digest)); sum != sha256.Sum256(data) {
		t.Fatal("<digest> differs from the image")
	}
	names, _ := os.ReadDir(d.mnt)
	var listed []string
	for _, e := range names {
		listed = append(listed, e.Name())
	}
	if !strings.Contains(strings.Join(listed, " "), st.Name) || !strings.Contains(strings.Join(listed, " "), digest) {
		t.Fatalf("readdir %v lacks %s or %s", listed, st.Name, digest)
	}
	_, got, _ = glanceOrigin(d.status())
	if got > int64(len(data))+(2<<20) {
		t.Fatalf("bytes from Glance = %d for a %d-byte image: chunks fetched twice", got, len(data))
	}
	d.stop()

	// Host 2: the manifest and nova's name only; chunks from Glance by range, verified.
	state2 := filepath.Join(dir, "state2")
	for _, sub := range []string{"manifests", "aliases"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(dir, "state", sub), filepath.Join(state2, sub)).CombinedOutput(); err != nil {
			if err := os.MkdirAll(state2, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("cp", "-a", filepath.Join(dir, "state", sub), filepath.Join(state2, sub)).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			_ = out
		}
	}
	d2 := startDaemon(t, state2, filepath.Join(dir, "mnt2"), "--glance-endpoint", ep, "--fill-rate", "0", "--scrub-rate", "0")
	nova2 := filepath.Join(d2.mnt, st.Name)
	if b, err := preadFile(t, nova2, 5<<20, 1<<20); err != nil || !bytes.Equal(b, data[5<<20:6<<20]) {
		t.Fatalf("host 2: read via Glance by range: %v", err)
	}
	glancetest.Corrupt(t, id, 9<<20+100)
	_, err = preadFile(t, nova2, 9<<20, 4096)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a chunk corrupted in Glance: err = %v, want EIO", err)
	}
	if _, _, bad := glanceOrigin(d2.status()); bad < 1 {
		t.Fatalf("origin corruption not counted:\n%s", d2.log)
	}
}

// With background fill on, a used raw image completes by itself and gets its digest; an image
// corrupted in Glance before any manifest fails its os_hash_value check and is marked bad.
func TestGlanceFillCompletesAndCorruptIsMarkedBad(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	good, gdata := glanceImage(t, dir, 2, 12<<20, 4<<20)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep, "--fill-rate", "1000000000", "--scrub-rate", "0")
	st, err := ensureGlance(t, d, good)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(d.mnt, st.Name)) // a use: fill starts
	if err != nil {
		t.Fatal(err)
	}
	digest := waitDigest(t, d, good)
	f.Close()
	if sum := shaFile(t, filepath.Join(d.mnt, digest)); sum != sha256.Sum256(gdata) {
		t.Fatal("<digest> differs from the image")
	}

	bad, _ := glanceImage(t, dir, 3, 8<<20, 0)
	glancetest.Corrupt(t, bad, 5<<20)
	st, err = ensureGlance(t, d, bad)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.mnt, st.Name)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := preadFile(t, p, 0, 4096)
		if errors.Is(err, syscall.EIO) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("image corrupted before its manifest still readable (err %v)\n%s", err, d.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, _, c := glanceOrigin(d.status()); c < 1 {
		t.Fatal("origin corruption not counted")
	}
	if _, err := ensureGlance(t, d, bad); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("ensure of a bad image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.state, "aliases", st.Name)); err != nil {
		t.Log("(alias of the bad image holds only its Glance id)")
	}
}

// qcow2: the first host converts (stream checked against os_hash_value), publish records
// basefs_manifest, and a second host with its own state reads lazily from the published store.
func TestGlanceQcow2ConvertPublishSecondHost(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	raw, sum := makeImage(t, dir, 6<<20, 4)
	qcow := filepath.Join(dir, "img.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	id := glancetest.Upload(t, t.Name(), "qcow2", "bare", qcow)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep, "--fill-rate", "0")
	st, err := ensureGlance(t, d, id)
	if err != nil || st.Digest == nil || st.Provisional {
		t.Fatalf("ensure qcow2: %+v, %v", st, err)
	}
	if shaFile(t, filepath.Join(d.mnt, st.Name)) != sum || shaFile(t, filepath.Join(d.mnt, st.Digest.String())) != sum {
		t.Fatal("converted image differs from its raw bytes")
	}
	pub := filepath.Join(dir, "pub")
	out := mustBasefs(t, "publish", "--state", filepath.Join(dir, "pubstate"), "--glance-endpoint", ep, "--to", "dir://"+pub, "glance://"+id)
	if !strings.Contains(out, glance.ManifestProperty+"="+st.Digest.String()) {
		t.Fatalf("publish: %s", out)
	}
	d2 := startDaemon(t, filepath.Join(dir, "state2"), filepath.Join(dir, "mnt2"), "--glance-endpoint", ep, "--origin", "dir://"+pub, "--fill-rate", "0")
	st2, err := ensureGlance(t, d2, id)
	if err != nil || st2.Digest == nil || *st2.Digest != *st.Digest {
		t.Fatalf("second host: %+v, %v", st2, err)
	}
	if b, err := preadFile(t, filepath.Join(d2.mnt, st.Name), 1<<20, 4096); err != nil || len(b) != 4096 {
		t.Fatal(err)
	}
	if present := d2.status().Stats.Fetches(); present > 2 {
		t.Fatalf("second host fetched %d chunks for one 4 KiB read", present)
	}
}

// Errors: each with a clear message, and no state kept.
func TestGlanceErrors(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	queued := glancetest.Create(t, "queued", "raw", "bare")
	p := filepath.Join(dir, "x.raw")
	os.WriteFile(p, storetest.Data(5, 1<<20), 0o644)
	ovf := glancetest.Upload(t, "ovf", "raw", "ovf", p)
	state := filepath.Join(dir, "state")
	for _, c := range []struct {
		endpoint, ref, want string
	}{
		{ep, "glance://00000000-0000-4000-8000-000000000000", "no such image"},
		{ep, "glance://" + queued, "not active"},
		{ep, "glance://" + ovf, "container format \"ovf\""},
		{"http://127.0.0.1:1", "glance://" + ovf, "is Glance running?"},
	} {
		_, stderr, code := basefs(t, "import", "--state", state, "--glance-endpoint", c.endpoint, c.ref)
		if code != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("import %s: exit %d, %q; want %q", c.ref, code, stderr, c.want)
		}
	}
	_, stderr, code := basefs(t, "import", "--state", state, "glance://NOT-A-UUID")
	if code != 2 || !strings.Contains(stderr, "UUID") {
		t.Errorf("bad ref: exit %d %q", code, stderr)
	}
	for _, sub := range []string{"manifests", "aliases", "tmp"} {
		if es, _ := os.ReadDir(filepath.Join(state, sub)); len(es) > 0 {
			t.Errorf("state kept after failures: %s has %d entries", sub, len(es))
		}
	}
	d := startDaemon(t, filepath.Join(dir, "dstate"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep)
	if _, err := ensureGlance(t, d, queued); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Errorf("ensure queued: %v", err)
	}
	if es, _ := os.ReadDir(filepath.Join(dir, "dstate", "aliases")); len(es) > 0 {
		t.Errorf("daemon kept an alias after a failed ensure")
	}
}
