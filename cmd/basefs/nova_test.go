package main

// Nova's own code on the mount: scripts/nova-driver.py runs Debian's python3-nova (Zed) —
// LibvirtDriver._create_image, imagebackend Qcow2/Flat cache(), _create_ephemeral/_create_swap,
// ImageCacheManager.update, get_disk_usage, images.fetch_to_raw — against a basefs mount at
// <tmp>/instances/_base with a real Glance. Only nova's database lookups are replaced (see the
// driver's header). Run in isolation with `go test -run Nova ./cmd/basefs`.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

const novaPython = "/usr/bin/python3" // Debian's: the one python3-nova's modules import with

type novaFile struct {
	Size  int64   `json:"size"`
	Mtime float64 `json:"mtime"`
}

// novaResult is the union of the driver's JSON results (fields absent in a result stay zero).
type novaResult struct {
	FetchCalled   bool                `json:"fetch_called"`
	Disk          string              `json:"disk"`
	DiskFormat    string              `json:"disk_format"`
	BackingFile   string              `json:"backing_file"`
	VirtualSize   int64               `json:"virtual_size"`
	Base          string              `json:"base"`
	Valid         bool                `json:"valid"`
	BaseMagic     string              `json:"base_magic"`
	DiskMagic     string              `json:"disk_magic"`
	Seconds       float64             `json:"seconds"`
	Before        map[string]novaFile `json:"before"`
	After         map[string]novaFile `json:"after"`
	Removed       []string            `json:"removed"`
	Touched       []string            `json:"touched"`
	Active        []string            `json:"active_base_files"`
	CacheBytes    int64               `json:"image_cache_bytes"`
	ReservedGB    int64               `json:"reserved_gb_for_image_cache"`
	SameDevice    bool                `json:"same_device"`
	LocalGB       map[string]float64  `json:"local_gb_info"`
	BaseFS        map[string]int64    `json:"base_fs_info"`
	Fetched       bool                `json:"fetched"`
	PartLeft      bool                `json:"part_left"`
	BaseAfterInfo *struct {
		Size int64 `json:"size"`
	} `json:"base_after"`
}

// novaEnv is one host: a basefs mount as nova's instances_path/_base, and the driver.
type novaEnv struct {
	t                     *testing.T
	ep, dir, inst, mnt    string
	state, driver, minAge string
	d                     *daemon
	extra                 []string // more `basefs mount` flags
}

func needNova(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "qemu-img", "mkfs.ext4", "mkswap", "cp")
	if _, err := os.Stat(novaPython); err != nil {
		testenv.Skip(t, novaPython+" is missing (Debian's python3)")
	}
	if out, err := exec.Command(novaPython, "-c", "import nova.virt.libvirt.imagebackend").CombinedOutput(); err != nil {
		testenv.Skip(t, "nova does not import with "+novaPython+" (install python3-nova): "+lastLine(string(out)))
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "scripts", "nova-driver.py"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newNovaEnv(t *testing.T, minAge int, extra ...string) *novaEnv {
	t.Helper()
	driver := needNova(t)
	e := &novaEnv{t: t, ep: glancetest.Start(t), dir: t.TempDir(), driver: driver, extra: extra}
	e.inst = filepath.Join(e.dir, "instances")
	e.mnt = filepath.Join(e.inst, "_base")
	e.state = filepath.Join(e.dir, "state")
	e.start(minAge)
	return e
}

func (e *novaEnv) start(minAge int) {
	e.minAge = strconv.Itoa(minAge)
	// List Glance on every miss: an image uploaded a moment ago is there at once.
	args := []string{"--instances-path", e.inst, "--glance-endpoint", e.ep,
		"--remove-unused-original-min-age", e.minAge, "--glance-list-min-interval", "0"}
	e.d = startDaemon(e.t, e.state, e.mnt, append(args, e.extra...)...)
}

// nova runs one driver subcommand against this host and decodes its result. A driver stuck
// on the mount (a FUSE request never answered) fails the test with the kernel stacks of its
// processes instead of hanging it.
func (e *novaEnv) nova(sub string, args ...string) *novaResult {
	e.t.Helper()
	argv := append([]string{e.driver, sub, "--instances-path", e.inst, "--glance", e.ep,
		"--original-min-age", e.minAge}, args...)
	cmd := exec.Command(novaPython, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(novaTimeout):
		stacks := procStacks(cmd.Process.Pid)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		// Kill the serving processes and the supervisor: the FUSE connection closes and the
		// requests in flight fail.
		e.d.kill9()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		e.t.Fatalf("nova-driver.py %s %v: no answer in %v; stuck in:\n%s\nstderr:\n%s\nbasefs log:\n%s",
			sub, args, novaTimeout, stacks, stderr.String(), e.d.log)
	}
	if err != nil {
		e.t.Fatalf("nova-driver.py %s %v: %v\n%s\nbasefs log:\n%s", sub, args, err, stderr.String(), e.d.log)
	}
	var r novaResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		e.t.Fatalf("nova-driver.py %s: %v\n%s", sub, err, stdout.String())
	}
	return &r
}

const novaTimeout = 3 * time.Minute

// procStacks returns the command line, syscall and kernel stack of each process in group pgid.
func procStacks(pgid int) string {
	var b strings.Builder
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
		fmt.Fprintf(&b, "pid %d: %s\n  syscall %s%s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), sc, stack)
	}
	return b.String()
}

// image uploads a raw image of data random bytes then zero bytes to Glance.
func (e *novaEnv) image(seed uint64, data, zeros int) (id, path string, sum [32]byte) {
	e.t.Helper()
	b := append(storetest.Data(seed, data), make([]byte, zeros)...)
	path = filepath.Join(e.dir, fmt.Sprintf("image-%d.raw", seed))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return glancetest.Upload(e.t, fmt.Sprintf("%s-%d", e.t.Name(), seed), "raw", "bare", path), path, sha256.Sum256(b)
}

// novaName is nova's _base name of a Glance image: imagecache.get_cache_fname.
func novaName(id string) string {
	h := sha1.Sum([]byte(id))
	return hex.EncodeToString(h[:])
}

func newUUID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func listNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func mounted(mnt string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(b), " "+mnt+" ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sameContent checks with qemu-img that disk (any format) reads as image (extra bytes zero).
func sameContent(t *testing.T, disk, image string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", "-U", "-F", "raw", disk, image).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", disk, image, err, out)
	}
}

// Qcow2 and Flat cache() of images the host never saw: nova finds <sha1(id)> already in _base,
// so it never calls fetch_image; the Qcow2 overlay's backing file is _base/<sha1> on the mount,
// the Flat copy is the image; with a larger root disk the disk grows, the base does not.
func TestNovaCacheNeverSeenImage(t *testing.T) {
	e := newNovaEnv(t, 86400)
	seed := uint64(100)
	for _, backend := range []string{"qcow2", "flat"} {
		for _, size := range []int64{0, 1 << 30} {
			t.Run(fmt.Sprintf("%s/size=%d", backend, size), func(t *testing.T) {
				seed++
				id, path, sum := e.image(seed, 6<<20, 10<<20)
				base := filepath.Join(e.mnt, novaName(id))
				st, err := os.Stat(base)
				if err != nil || st.Size() != 16<<20 {
					t.Errorf("before nova: stat %s: %v; every Glance image must be in _base (of 16 MiB)", base, err)
				}
				args := []string{"--backend", backend, "--image-id", id, "--instance-uuid", newUUID(t)}
				if size > 0 {
					args = append(args, "--size", strconv.FormatInt(size, 10))
				}
				r := e.nova("cache", args...)
				t.Logf("%s cache() of a never seen image: %.3f s, fetch_called=%v", backend, r.Seconds, r.FetchCalled)
				if r.FetchCalled {
					t.Errorf("nova called fetch_image: _base/%s was not there", novaName(id))
				}
				want := int64(16 << 20)
				if size > want {
					want = size
				}
				if r.VirtualSize != want {
					t.Errorf("disk virtual size %d, want %d", r.VirtualSize, want)
				}
				switch backend {
				case "qcow2":
					if r.DiskFormat != "qcow2" || r.BackingFile != base {
						t.Errorf("qcow2 disk: format %q backing %q, want qcow2 backed by %s", r.DiskFormat, r.BackingFile, base)
					}
				case "flat":
					if r.DiskFormat != "raw" || r.BackingFile != "" {
						t.Errorf("flat disk: format %q backing %q, want raw without backing", r.DiskFormat, r.BackingFile)
					}
				}
				sameContent(t, r.Disk, path)
				if st, err := os.Stat(base); err != nil || st.Size() != 16<<20 {
					t.Errorf("after nova: stat %s: %v", base, err)
				}
				if shaFile(t, base) != sum {
					t.Error("_base/<sha1> does not read as the Glance image")
				}
			})
		}
	}
}

// Ephemeral and swap disks: nova creates _base/ephemeral_<GB>_<hash> and _base/swap_<MB> (qcow2)
// as plain read-write files on the mount, mkfs/mkswap them there, and overlays them; flat
// generates them in the instance directory.
func TestNovaEphemeralSwap(t *testing.T) {
	e := newNovaEnv(t, 86400)
	ephName := regexp.MustCompile(`^ephemeral_1_[0-9a-f]{7}$`)
	for _, backend := range []string{"qcow2", "flat"} {
		u := newUUID(t)
		eph := e.nova("ephemeral", "--backend", backend, "--instance-uuid", u, "--gb", "1")
		swap := e.nova("swap", "--backend", backend, "--instance-uuid", u, "--mb", "64")
		for _, c := range []struct {
			what string
			r    *novaResult
			fs   string
			size int64
		}{{"ephemeral", eph, "ext", 1 << 30}, {"swap", swap, "swap", 64 << 20}} {
			r := c.r
			if !r.Valid || r.DiskMagic != c.fs || r.VirtualSize != c.size {
				t.Errorf("%s %s: valid=%v disk holds %q, virtual size %d; want %s, %d", backend, c.what, r.Valid, r.DiskMagic, r.VirtualSize, c.fs, c.size)
			}
			if filepath.Dir(r.Base) != e.mnt {
				t.Errorf("%s base %s not in %s", c.what, r.Base, e.mnt)
			}
			if backend == "qcow2" {
				if r.BackingFile != r.Base || r.BaseMagic != c.fs {
					t.Errorf("qcow2 %s: backing %q (want %s), base holds %q", c.what, r.BackingFile, r.Base, r.BaseMagic)
				}
				st, err := os.Stat(r.Base)
				if err != nil || st.Size() != c.size {
					t.Errorf("stat %s on the mount: %v", r.Base, err)
				}
			}
		}
		if backend == "qcow2" {
			names := listNames(t, e.mnt)
			if !ephName.MatchString(filepath.Base(eph.Base)) || !contains(names, filepath.Base(eph.Base)) || !contains(names, "swap_64") {
				t.Errorf("_base listing %v lacks %s or swap_64", names, filepath.Base(eph.Base))
			}
		}
	}
}

// nova's image cache manager on the mount: with an instance running, its base, ephemeral and
// swap files are kept and their mtimes renewed (utime); the mount refuses to remove the image
// an overlay uses (EBUSY); after the instance is gone and nova's minimum ages are lowered,
// nova removes all three and they leave the listing.
func TestNovaImageCacheUpdate(t *testing.T) {
	e := newNovaEnv(t, 3600)
	id, _, _ := e.image(200, 4<<20, 4<<20)
	name := novaName(id)
	u := newUUID(t)
	if r := e.nova("cache", "--image-id", id, "--instance-uuid", u); r.FetchCalled {
		t.Error("nova fetched an image that should have been in _base")
	}
	eph := filepath.Base(e.nova("ephemeral", "--instance-uuid", u, "--gb", "1").Base)
	e.nova("swap", "--instance-uuid", u, "--mb", "32")
	files := []string{name, eph, "swap_32"}

	time.Sleep(1100 * time.Millisecond)
	t0 := float64(time.Now().Add(-time.Second).UnixNano()) / 1e9
	r := e.nova("imagecache-update", "--running", u+":"+id)
	for _, f := range files {
		a, ok := r.After[f]
		if !ok || contains(r.Removed, f) {
			t.Errorf("nova removed %s while its instance runs (removed %v)", f, r.Removed)
			continue
		}
		if !contains(r.Touched, f) || a.Mtime < t0 || a.Mtime <= r.Before[f].Mtime {
			t.Errorf("%s: mtime %.3f -> %.3f, want renewed (>= %.3f)", f, r.Before[f].Mtime, a.Mtime, t0)
		}
	}
	if !contains(r.Active, filepath.Join(e.mnt, name)) {
		t.Errorf("nova's active base files %v lack %s", r.Active, name)
	}
	if err := os.Remove(filepath.Join(e.mnt, name)); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("unlink of an image an overlay uses: %v, want EBUSY", err)
	}

	// The instance is gone and nova's minimum ages are lowered: nova removes all three.
	if err := os.RemoveAll(filepath.Join(e.inst, u)); err != nil {
		t.Fatal(err)
	}
	r = e.nova("imagecache-update", "--running=", "--original-min-age", "0", "--resized-min-age", "0")
	names := listNames(t, e.mnt)
	for _, f := range files {
		if !contains(r.Removed, f) || contains(names, f) {
			t.Errorf("%s: removed by nova %v, listed %v; want removed and not listed", f, contains(r.Removed, f), contains(names, f))
		}
	}
	for _, f := range files[1:] { // plain files: gone
		if _, err := os.Stat(filepath.Join(e.mnt, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s after nova removed it: %v", f, err)
		}
	}
	_, err := os.Stat(filepath.Join(e.mnt, name))
	t.Logf("lookup of the removed image's name (still in Glance): %v", err)
}

// nova's disk usage of _base: ImageCacheManager.get_disk_usage counts _base only when it is on
// instances_path's device; the mount is its own device, so nova reserves nothing for it, and
// statvfs on the mount answers.
func TestNovaDiskUsage(t *testing.T) {
	e := newNovaEnv(t, 86400)
	id, _, _ := e.image(300, 2<<20, 2<<20)
	e.nova("cache", "--image-id", id, "--instance-uuid", newUUID(t))
	r := e.nova("disk-usage")
	t.Logf("disk usage: cache %d B, reserved %d GB, same device %v, local %v, _base statvfs %v", r.CacheBytes, r.ReservedGB, r.SameDevice, r.LocalGB, r.BaseFS)
	if r.SameDevice || r.CacheBytes != 0 || r.ReservedGB != 0 {
		t.Errorf("mount counted as instances_path's device: same=%v bytes=%d reserved=%d (mounted: %v)\n%s",
			r.SameDevice, r.CacheBytes, r.ReservedGB, mounted(e.mnt), e.d.log)
	}
	if r.LocalGB["total"] <= 0 || r.BaseFS == nil {
		t.Errorf("local_gb_info %v, _base statvfs %v", r.LocalGB, r.BaseFS)
	}
}

// nova's own download path onto the mount: images.fetch_to_raw writes <sha1>.part (a plain
// file), fsyncs and renames it to <sha1>, which the mount adopts as the image; nova's
// cache_image API finds the image present and only touches it.
func TestNovaFetchToRaw(t *testing.T) {
	e := newNovaEnv(t, 86400)
	id, path, sum := e.image(400, 3<<20, 5<<20)
	name := novaName(id)
	r := e.nova("fetch-to-raw", "--image-id", id, "--cache-image")
	if r.Fetched {
		t.Error("LibvirtDriver.cache_image downloaded an image that was in _base")
	}
	r = e.nova("fetch-to-raw", "--image-id", id)
	if !r.Fetched || r.PartLeft || r.BaseAfterInfo == nil || r.BaseAfterInfo.Size != 8<<20 {
		t.Fatalf("fetch_to_raw: fetched=%v .part left=%v base %+v", r.Fetched, r.PartLeft, r.BaseAfterInfo)
	}
	names := listNames(t, e.mnt)
	if !contains(names, name) || contains(names, name+".part") {
		t.Errorf("listing after the rename: %v", names)
	}
	if shaFile(t, filepath.Join(e.mnt, name)) != sum {
		t.Error("adopted image differs from the Glance image")
	}
	c := e.nova("cache", "--image-id", id, "--instance-uuid", newUUID(t))
	if c.FetchCalled || c.BackingFile != filepath.Join(e.mnt, name) {
		t.Errorf("cache() after the adoption: fetch_called=%v backing %q", c.FetchCalled, c.BackingFile)
	}
	sameContent(t, c.Disk, path)
}

// Spawn time through Qcow2.cache() of a cold 2 GiB raw image with ~10% data, on the mount,
// against nova's plain-directory baseline in the same run (download of the whole image).
// ~30 s; the figures are logged, the assertions are that nova never downloads on the mount
// and downloads everything on the plain directory.
func TestNovaQcow2Cold2GiB(t *testing.T) {
	e := newNovaEnv(t, 86400)
	f, err := os.Create(filepath.Join(e.dir, "big.raw"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(2 << 30)
	for off := int64(0); off < 2<<30; off += 10 << 20 {
		f.WriteAt(storetest.Data(uint64(off), 1<<20), off)
	}
	f.Close()
	id := glancetest.Upload(t, t.Name(), "raw", "bare", f.Name())
	start := time.Now()
	r := e.nova("cache", "--image-id", id, "--instance-uuid", newUUID(t), "--size", strconv.Itoa(4<<30))
	elapsed := time.Since(start)
	_, got, _ := glanceOrigin(e.d.status())
	t.Logf("cold 2 GiB Qcow2.cache(): %.3f s in nova (%.3f s with the driver's start), fetch_called=%v, %d bytes from Glance",
		r.Seconds, elapsed.Seconds(), r.FetchCalled, got)
	if r.FetchCalled || !strings.HasPrefix(r.BackingFile, e.mnt+"/") {
		t.Errorf("fetch_called=%v backing %q", r.FetchCalled, r.BackingFile)
	}
	if got > 256<<20 {
		t.Errorf("Glance served %d bytes for nova's cache() of a 2 GiB image: not lazy", got)
	}
	// The baseline in the same run: nova's own _base, a plain directory (nova downloads).
	plain := *e
	plain.inst = filepath.Join(e.dir, "plain-instances")
	os.MkdirAll(filepath.Join(plain.inst, "_base"), 0o755)
	exec.Command("sync").Run()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
	start = time.Now()
	p := plain.nova("cache", "--image-id", id, "--instance-uuid", newUUID(t), "--size", strconv.Itoa(4<<30))
	elapsed = time.Since(start)
	fi, err := os.Stat(filepath.Join(plain.inst, "_base", novaName(id)))
	if err != nil || !p.FetchCalled {
		t.Fatalf("plain _base: fetch_called=%v, base %v", p.FetchCalled, err)
	}
	t.Logf("cold 2 GiB Qcow2.cache() on a plain _base: %.3f s in nova (%.3f s with the driver's start), %d bytes from Glance (the whole image)",
		p.Seconds, elapsed.Seconds(), fi.Size())
}
