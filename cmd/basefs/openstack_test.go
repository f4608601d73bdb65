package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
)

// The OpenStack this test brings up (scripts/start-openstack.sh) is its own: a fixed state
// directory (so a second run on a machine reuses the databases instead of creating them again),
// ports apart from start-openstack.sh's defaults (a cloud someone runs there is not touched), and
// its own libvirt domain names (instance_name_template), which the default cloud's
// start-openstack.sh never mistakes for its orphans. Everything it starts is stopped at the end;
// the state directory stays.
const (
	osTestDirDefault = "/var/lib/basefs-openstack-test" // BASEFS_OPENSTACK_TEST_DIR overrides it
	osTestDomains    = "basefs-ostest-"                 // nova's libvirt domain names in this cloud
	osTestPrefix     = "basefs-ostest-"                 // Glance images, flavor, servers
)

// Ports on 127.0.0.1 below the ephemeral range (RabbitMQ's distribution port is RABBIT+20000).
var osTestPorts = map[string]int{
	"KEYSTONE": 25000, "GLANCE": 29292, "PLACEMENT": 28778, "NOVA": 28774, "NEUTRON": 29696,
	"RABBIT": 5682, "MYSQL": 23306, "EPMD": 24379,
}

// The guest's disk: readBytes of data the guest reads (and hashes), then data it never reads.
const (
	osImageSize = 128 << 20
	osReadBytes = 8 << 20
)

// osCloud is the test's cloud: its scripts' environment and API clients as Keystone's admin.
type osCloud struct {
	t       *testing.T
	repo    string
	dir     string // BASEFS_OPENSTACK_DIR
	inst    string // nova-compute's instances_path
	extra   string // BASEFS_OPENSTACK_NOVA_EXTRA_CONF
	compute *gophercloud.ServiceClient
	image   *gophercloud.ServiceClient
}

// TestOpenStackNovaBootsOnBasefs is issue 13's integration test: a real all-in-one OpenStack
// (Keystone, Glance with Keystone auth, Placement, Neutron without agents, Nova with libvirt/TCG)
// whose nova-compute has a basefs mount as instances/_base, basefs reaching Glance through
// Keystone as the service user basefs. Booted through the Nova API: the test guest (kernel and
// ramdisk as aki/ari, nova writes them into _base itself; the disk raw). Asserted: the server goes
// ACTIVE, the guest prints the right checksum of the bytes it read, its overlay
// instances/<uuid>/disk is backed by _base/<sha1 of the image id> on the mount, Glance served
// about what the guest read (basefs's counters and Glance's own log agree), far below the
// image's size; deleting the server keeps the base; a second server of the image takes 0 bytes
// from Glance; with nova's remove_unused_original_minimum_age_seconds lowered, nova's image
// cache manager unlinks the unused base, which leaves _base and whose chunks are freed. Then
// the same boot on nova's own plain _base (nova downloads the image) for comparison, and a
// basefs daemon with a wrong Keystone password: a clear Glance error in status and log, no
// crash, local images served.
func TestOpenStackNovaBootsOnBasefs(t *testing.T) {
	agenttest.Need(t)
	testenv.NeedBinary(t, "apt-get", "dpkg-query", "flock", "curl")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Skip(t, "Debian's /usr/bin/python3 is missing (OpenStack runs on it)")
	}
	guest := agenttest.GuestDir(t)
	tStart := time.Now()
	c := newOSCloud(t)
	work, err := os.MkdirTemp("", "basefs-openstack-test")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(work, 0o755)
	t.Cleanup(func() { os.RemoveAll(work) })
	c.leftovers()

	// 1. Everything but nova-compute (installs the packages if missing).
	c.writeExtra("")
	tSetup := time.Now()
	up1, log1 := c.start(false)
	t.Cleanup(c.stopAll)
	adminRC := readOpenrc(t, filepath.Join(c.dir, "openrc"))
	basefsRC := readOpenrc(t, filepath.Join(c.dir, "openrc-basefs"))
	if basefsRC["OS_USERNAME"] != "basefs" || basefsRC["OS_PASSWORD"] == "" {
		t.Fatalf("openrc-basefs: user %q, password set %v", basefsRC["OS_USERNAME"], basefsRC["OS_PASSWORD"] != "") // the password never in a log
	}

	// 2. basefs at instances/_base, Glance through Keystone as the service user basefs, then
	// nova-compute over the mount.
	base := filepath.Join(c.inst, "_base")
	state := filepath.Join(work, "state")
	tMount := time.Now()
	d := startDaemonEnv(t, osEnviron(basefsRC), state, base, "--instances-path", c.inst,
		"--glance-list-min-interval", "0", "--fill-rate", "0")
	mountS := time.Since(tMount)
	t.Cleanup(func() { c.stop("nova-compute") }) // before the mount goes (cleanups run last first)
	if st := d.status(); st.Glance == nil || st.Glance.Error != "" {
		t.Fatalf("basefs reaches no Glance through Keystone: %+v\n%s", st.Glance, d.log)
	}
	up2, log2 := c.start(true)
	setupS := time.Since(tSetup)
	t.Logf("set-up: %.1f s (start-openstack.sh without nova-compute %.1f s, basefs mount %.1f s, with nova-compute %.1f s)",
		setupS.Seconds(), up1.Seconds(), mountS.Seconds(), up2.Seconds())
	for _, l := range []string{log1, log2} {
		if l != "" {
			t.Logf("  start-openstack.sh: %s", l)
		}
	}
	c.connect(adminRC)
	t.Cleanup(c.deleteAll)
	c.deleteAll() // servers and images a killed run left

	// 3. The test guest in Glance: kernel (aki), ramdisk (ari: the guest's, holding after its
	// checks so that nova's console API can show them), disk (raw).
	ramdisk := filepath.Join(work, "initrd-hold.gz")
	holdInitrd(t, filepath.Join(guest, "initrd.gz"), ramdisk)
	data := storetest.Data(1301, osImageSize)
	diskFile := filepath.Join(work, "disk.raw")
	if err := os.WriteFile(diskFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data[:osReadBytes])
	wantLine := fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", hex.EncodeToString(sum[:]), osReadBytes)
	tUp := time.Now()
	kernelID := c.upload("kernel", "aki", "aki", filepath.Join(guest, "vmlinuz"), nil)
	ramdiskID := c.upload("ramdisk", "ari", "ari", ramdisk, nil)
	diskID := c.upload("disk", "raw", "bare", diskFile, map[string]string{
		"kernel_id": kernelID, "ramdisk_id": ramdiskID,
		"os_command_line": fmt.Sprintf("console=ttyS0 quiet panic=-1 basefs.readsize=%d", osReadBytes),
	})
	t.Logf("uploaded kernel, ramdisk and a %d MiB raw disk in %.1f s", osImageSize>>20, time.Since(tUp).Seconds())
	flavor := c.flavor()
	diskName := glanceref.NovaName(diskID)
	diskBase := filepath.Join(base, diskName)

	// Server 1: cold. nova finds the disk's base on the mount (never downloads it); the guest
	// reads 8 MiB of it through the overlay, lazily from Glance.
	glanceLog := filepath.Join(c.dir, "log", "glance.log")
	off1 := fileSize(glanceLog)
	s1 := c.boot("1", diskID, flavor, wantLine)
	_, got1, bad := glanceOrigin(d.status())
	served1 := glanceServed(t, glanceLog, off1)
	t.Logf("server 1 (basefs _base, cold): create → ACTIVE %.1f s, → checksum line %.1f s; Glance served %.1f MiB for the disk (basefs counted %.1f MiB; the guest read %d MiB of %d MiB), kernel %.1f MiB and ramdisk %.1f MiB",
		s1.active.Seconds(), s1.sum.Seconds(), mib(served1[diskID]), mib(got1), osReadBytes>>20, osImageSize>>20,
		mib(served1[kernelID]), mib(served1[ramdiskID]))
	if bad != 0 {
		t.Errorf("basefs counted %d corrupt answers from Glance", bad)
	}
	// The disk is read lazily: Glance serves about what the guest read. basefs's Glance origin
	// also counts the kernel (aki) and ramdisk (ari), which it imports whole for nova (nova then
	// downloads neither), so its count is compared with Glance's for all three.
	if d1 := served1[diskID]; d1 < osReadBytes || d1 > 2*osReadBytes+(8<<20) || d1 > osImageSize/4 {
		t.Errorf("Glance served %d bytes of the disk image after the guest read %d of a %d-byte image; want about what it read", d1, osReadBytes, osImageSize)
	}
	if s := served1[diskID] + served1[kernelID] + served1[ramdiskID]; s < got1 || s > got1+(1<<20) {
		t.Errorf("Glance's log has %d bytes served for the disk, kernel and ramdisk images, basefs counted %d", s, got1)
	}
	c.checkOverlay(s1.id, diskBase, base)
	c.deleteServer(s1.id)
	if _, err := os.Stat(filepath.Join(c.inst, s1.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the instance directory of a deleted server: %v", err)
	}
	if !slices.Contains(listDir(t, base), diskName) {
		t.Fatalf("the base %s left _base with its server: %v", diskName, listDir(t, base))
	}
	if _, err := os.Stat(diskBase); err != nil {
		t.Fatalf("stat of the base after the delete: %v", err)
	}

	// Server 2: the same image, warm: nothing more from Glance.
	off2 := fileSize(glanceLog)
	s2 := c.boot("2", diskID, flavor, wantLine)
	_, got2, _ := glanceOrigin(d.status())
	served2 := glanceServed(t, glanceLog, off2)
	t.Logf("server 2 (basefs _base, warm): create → ACTIVE %.1f s, → checksum line %.1f s; %d new bytes from Glance (Glance's log: %d)",
		s2.active.Seconds(), s2.sum.Seconds(), got2-got1, served2[diskID])
	if got2 != got1 || served2[diskID] != 0 {
		t.Errorf("second server of the same image: %d new bytes counted by basefs, %d in Glance's log; want 0", got2-got1, served2[diskID])
	}
	c.checkOverlay(s2.id, diskBase, base)
	c.deleteServer(s2.id)
	if !slices.Contains(listDir(t, base), diskName) {
		t.Fatalf("the base left _base with the second server")
	}

	// openstack aggregate cache image: the image is wholly local before any server boots.
	c.precache(d, work, base, adminRC)

	// nova's image cache manager, its minimum age lowered: it unlinks the unused base (and the
	// kernel and ramdisk files it wrote); basefs removes the image and frees its chunks.
	before := d.status()
	chunksBefore := countFiles(filepath.Join(state, "chunks"))
	if chunksBefore == 0 {
		t.Fatalf("no chunk in %s/chunks after two boots", state)
	}
	c.writeExtra("[image_cache]\nremove_unused_original_minimum_age_seconds = 3\n")
	tGC := time.Now()
	c.start(true) // nova-compute restarts with the extra configuration
	for deadline := time.Now().Add(2 * time.Minute); slices.Contains(listDir(t, base), diskName); {
		if time.Now().After(deadline) {
			t.Fatalf("nova's image cache manager did not remove the unused base within 2 min; _base: %v\nbasefs log:\n%s\nnova-compute log:\n%s",
				listDir(t, base), d.log, tail(filepath.Join(c.dir, "log", "nova-compute.log"), 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	gcS := time.Since(tGC)
	var after *control.Status
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after = d.status()
		if countFiles(filepath.Join(state, "chunks")) == 0 || time.Now().After(deadline) {
			break
		}
	}
	chunksAfter := countFiles(filepath.Join(state, "chunks"))
	removed, freed, bytesFreed := int64(0), int64(0), int64(0)
	if after.Manager != nil && before.Manager != nil {
		removed = after.Manager.ImagesRemoved - before.Manager.ImagesRemoved
		freed = after.Manager.ChunksRemoved - before.Manager.ChunksRemoved
		bytesFreed = after.Manager.BytesFreed - before.Manager.BytesFreed
	}
	t.Logf("image cache manager: the unused base left _base %.1f s after nova-compute's restart; basefs: %d image(s) removed, %d chunks (%.1f MiB) freed, chunk files %d → %d; _base now %v",
		gcS.Seconds(), removed, freed, mib(bytesFreed), chunksBefore, chunksAfter, listDir(t, base))
	if removed < 1 || freed < int64(chunksBefore) || chunksAfter != 0 {
		t.Errorf("after nova's unlink: images removed %d, chunks removed %d of %d, %d chunk files left; want the image and all its chunks gone\n%s",
			removed, freed, chunksBefore, chunksAfter, d.log)
	}
	for _, im := range after.Images {
		t.Errorf("basefs still lists image %s (%d of %d chunks present)", im.Digest, im.Present, im.Total)
	}
	if !strings.Contains(d.log.String(), "image removed on unlink") {
		t.Errorf("the basefs log does not tell of the unlink:\n%s", d.log)
	}
	if _, err := os.Stat(diskBase); err != nil {
		t.Logf("(lookup of %s after the removal: %v)", diskName, err)
	}

	// The same boot on nova's own _base directory: stop nova-compute, unmount basefs, start
	// nova-compute on the plain directory. nova downloads the image into it.
	c.stop("nova-compute")
	d.stop()
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			t.Logf("basefs (nova's _base) logged: %s", l)
		}
	}
	if isMount(base) {
		t.Fatalf("%s is still a mount point after basefs stopped", base)
	}
	if es, _ := os.ReadDir(base); len(es) > 0 {
		t.Fatalf("the plain %s is not empty: %v", base, es)
	}
	tPlain := time.Now()
	c.start(true)
	plainUpS := time.Since(tPlain)
	off3 := fileSize(glanceLog)
	s3 := c.boot("plain", diskID, flavor, wantLine)
	served3 := glanceServed(t, glanceLog, off3)
	t.Logf("server 3 (nova's plain _base, cold; nova-compute restart %.1f s): create → ACTIVE %.1f s, → checksum line %.1f s; Glance served %.1f MiB for the disk (nova's download), kernel %.1f MiB, ramdisk %.1f MiB",
		plainUpS.Seconds(), s3.active.Seconds(), s3.sum.Seconds(), mib(served3[diskID]), mib(served3[kernelID]), mib(served3[ramdiskID]))
	if served3[diskID] < osImageSize {
		t.Errorf("nova's own _base: Glance's log has %d bytes for the %d-byte disk image", served3[diskID], osImageSize)
	}
	if fi, err := os.Stat(diskBase); err != nil || fi.Size() != osImageSize {
		t.Errorf("nova's own base %s: %v", diskBase, err)
	}
	c.deleteServer(s3.id)

	// 4. Keystone refuses basefs's password: a clear error, no crash, local images served.
	c.keystoneFailure(work, basefsRC, diskID)

	t.Logf("summary (TCG, loopback; %d MiB raw image, the guest reads %d MiB):", osImageSize>>20, osReadBytes>>20)
	t.Logf("  %-34s %8s %8s %10s", "", "ACTIVE", "checksum", "from Glance")
	t.Logf("  %-34s %7.1fs %7.1fs %8.1f MiB", "basefs _base, cold", s1.active.Seconds(), s1.sum.Seconds(), mib(got1))
	t.Logf("  %-34s %7.1fs %7.1fs %8.1f MiB", "basefs _base, second server", s2.active.Seconds(), s2.sum.Seconds(), mib(got2-got1))
	t.Logf("  %-34s %7.1fs %7.1fs %8.1f MiB", "nova's plain _base, cold", s3.active.Seconds(), s3.sum.Seconds(), mib(served3[diskID]))
	t.Logf("  set-up %.1f s; the whole test %.1f s", setupS.Seconds(), time.Since(tStart).Seconds())
}

// keystoneFailure: a second daemon with basefs's Keystone user and a wrong password.
func (c *osCloud) keystoneFailure(work string, rc map[string]string, glanceID string) {
	t := c.t
	state, mnt := filepath.Join(work, "state-badauth"), filepath.Join(work, "mnt-badauth")
	// (a whole number of 512-byte sectors: qemu, and so basefs import, rounds raw images up)
	img, want := makeImage(t, work, 5<<20+3*4096, 1302)
	digest := lastLine(mustBasefs(t, "import", "--state", state, img))
	bad := map[string]string{}
	for k, v := range rc {
		bad[k] = v
	}
	bad["OS_PASSWORD"] = "not-" + rc["OS_PASSWORD"]
	d := startDaemonEnv(t, osEnviron(bad), state, mnt, "--glance-list-min-interval", "0")
	st := d.status()
	if st.Glance == nil || !strings.Contains(st.Glance.Error, "refused the credentials") {
		t.Errorf("status with a wrong Keystone password: glance %+v; want an error saying Keystone refused the credentials", st.Glance)
	}
	out := mustBasefs(t, "status", "--base", mnt)
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "glance: ERROR") {
			line = l
		}
	}
	if !strings.Contains(line, "refused the credentials") {
		t.Errorf("basefs status shows no Glance error:\n%s", out)
	}
	if !strings.Contains(d.log.String(), "Glance unusable") || !strings.Contains(d.log.String(), "refused the credentials") {
		t.Errorf("the log does not say Glance is unusable:\n%s", d.log)
	}
	// The nova name of a real Glance image: not served, and the daemon lives on.
	_, err := os.Stat(filepath.Join(mnt, glanceref.NovaName(glanceID)))
	if err == nil {
		t.Errorf("a daemon Keystone refused serves the Glance image %s", glanceID)
	}
	if got := shaFile(t, filepath.Join(mnt, digest)); got != want {
		t.Error("a local image read through the daemon without Glance differs from its source")
	}
	time.Sleep(time.Second)
	select {
	case <-d.done:
		t.Fatalf("the daemon exited:\n%s", d.log)
	default:
	}
	if got := shaFile(t, filepath.Join(mnt, digest)); got != want {
		t.Error("second read of the local image differs")
	}
	t.Logf("wrong Keystone password: status says %q; lookup of the disk image's nova name: %v; the local image reads right", line, err)
	d.stop()
}

func newOSCloud(t *testing.T) *osCloud {
	dir := os.Getenv("BASEFS_OPENSTACK_TEST_DIR")
	if dir == "" {
		dir = osTestDirDefault
	}
	c := &osCloud{t: t, repo: agenttest.RepoRoot(t), dir: dir, inst: filepath.Join(dir, "instances")}
	c.extra = filepath.Join(dir, "test-nova-extra.conf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One test run per state directory at a time (two `go test` runs on one machine).
	lock, err := os.OpenFile(filepath.Join(dir, ".test-lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil; time.Sleep(time.Second) {
		if time.Since(start) > 20*time.Minute {
			t.Fatalf("another test run holds %s/.test-lock for 20 min", dir)
		}
		if time.Since(start) < time.Second {
			t.Logf("waiting for another test run's OpenStack in %s", dir)
		}
	}
	t.Cleanup(func() { lock.Close() })
	return c
}

// env is the scripts' environment: no OS_* of the caller, this cloud's directory and ports.
func (c *osCloud) env(compute bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") && !strings.HasPrefix(kv, "BASEFS_OPENSTACK_") {
			env = append(env, kv)
		}
	}
	for k, p := range osTestPorts {
		env = append(env, fmt.Sprintf("BASEFS_OPENSTACK_%s_PORT=%d", k, p))
	}
	cmp := "0"
	if compute {
		cmp = "1"
	}
	return append(env, "BASEFS_OPENSTACK_DIR="+c.dir, "BASEFS_OPENSTACK_INSTANCES="+c.inst,
		"BASEFS_OPENSTACK_COMPUTE="+cmp, "BASEFS_OPENSTACK_NOVA_EXTRA_CONF="+c.extra,
		"BASEFS_OPENSTACK_IMAGE_CACHE_INTERVAL=5")
}

// writeExtra writes nova-compute's extra configuration: the test's domain names, plus more.
func (c *osCloud) writeExtra(more string) {
	// periodic_fuzzy_delay 0: nova-compute's periodic tasks (the image cache manager's among
	// them) start at once, not after a random 0–60 s.
	conf := "# basefs cmd/basefs/openstack_test.go\n[DEFAULT]\ninstance_name_template = " + osTestDomains + "%08x\n" +
		"periodic_fuzzy_delay = 0\n" + more
	if err := os.WriteFile(c.extra, []byte(conf), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// start runs start-openstack.sh; it returns how long it took and its summary line, if any.
func (c *osCloud) start(compute bool) (time.Duration, string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.repo, "scripts", "start-openstack.sh"))
	cmd.Env = c.env(compute)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if _, err := cmd.Output(); err != nil {
		c.t.Fatalf("start-openstack.sh (BASEFS_OPENSTACK_COMPUTE=%v): %v\n%s", compute, err, stderr.String())
	}
	took := time.Since(t0)
	summary := ""
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "took") && strings.Contains(l, "apt-install") || strings.Contains(l, ": up in ") {
			summary += strings.TrimSpace(l[strings.Index(l, ": ")+2:]) + "; "
		}
	}
	return took, strings.TrimSuffix(summary, "; ")
}

func (c *osCloud) stop(services ...string) {
	cmd := exec.Command(filepath.Join(c.repo, "scripts", "stop-openstack.sh"), services...)
	cmd.Env = c.env(false)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Errorf("stop-openstack.sh %v: %v\n%s", services, err, out)
	}
}

// stopAll stops the cloud and removes what nova left in the instances path (domains of this
// cloud too, should a server have survived its delete).
func (c *osCloud) stopAll() {
	c.stop()
	c.removeDomains()
	if !isMount(filepath.Join(c.inst, "_base")) {
		os.RemoveAll(c.inst)
	}
}

// leftovers clears what a killed run left: nova-compute, a basefs mount at _base (its
// supervisor is asked to stop, else the mount is detached), this cloud's domains, the
// instances directory.
func (c *osCloud) leftovers() {
	c.stop("nova-compute")
	base := filepath.Join(c.inst, "_base")
	if isMount(base) {
		c.t.Logf("a mount at %s from an earlier run: stopping it", base)
		if b, err := xattr(base, "user.basefs.supervisor"); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGTERM)
				for i := 0; i < 100 && isMount(base); i++ {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		if isMount(base) {
			unix.Unmount(base, unix.MNT_DETACH)
		}
	}
	c.removeDomains()
	if !isMount(base) {
		os.RemoveAll(c.inst)
	}
}

// removeDomains destroys and undefines libvirt domains of this cloud (named osTestDomains…,
// their files under its instances path).
func (c *osCloud) removeDomains() {
	out, _ := virsh("list", "--all", "--name")
	for _, name := range strings.Fields(out) {
		if !strings.HasPrefix(name, osTestDomains) {
			continue
		}
		if xml, err := virsh("dumpxml", name); err == nil && strings.Contains(xml, c.inst+"/") {
			virsh("destroy", name)
			virsh("undefine", name)
		}
	}
}

func (c *osCloud) connect(rc map[string]string) {
	t := c.t
	ctx := context.Background()
	pc, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: rc["OS_AUTH_URL"], Username: rc["OS_USERNAME"], Password: rc["OS_PASSWORD"],
		DomainName: rc["OS_USER_DOMAIN_NAME"], TenantID: rc["OS_PROJECT_ID"],
	})
	if err != nil {
		t.Fatalf("Keystone (admin): %v", err)
	}
	eo := gophercloud.EndpointOpts{Region: rc["OS_REGION_NAME"]}
	if c.compute, err = openstack.NewComputeV2(pc, eo); err != nil {
		t.Fatal(err)
	}
	c.compute.Microversion = "2.37" // networks "none"
	if c.image, err = openstack.NewImageV2(pc, eo); err != nil {
		t.Fatal(err)
	}
}

// deleteAll deletes every server and image of this cloud (it is the test's own).
func (c *osCloud) deleteAll() {
	if c.compute == nil {
		return
	}
	ctx := context.Background()
	var ids []string
	servers.List(c.compute, servers.ListOpts{AllTenants: true}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ss, err := servers.ExtractServers(p)
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		return true, err
	})
	for _, id := range ids {
		c.deleteServer(id)
	}
	images.List(c.image, images.ListOpts{}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		is, err := images.ExtractImages(p)
		for _, im := range is {
			if err := images.Delete(ctx, c.image, im.ID).ExtractErr(); err != nil {
				c.t.Logf("delete image %s: %v", im.ID, err)
			}
		}
		return true, err
	})
}

// upload creates an image from a file and waits until it is active.
func (c *osCloud) upload(what, diskFormat, containerFormat, path string, props map[string]string) string {
	t := c.t
	ctx := context.Background()
	im, err := images.Create(ctx, c.image, images.CreateOpts{Name: osTestPrefix + what, DiskFormat: diskFormat,
		ContainerFormat: containerFormat, Properties: props}).Extract()
	if err != nil {
		t.Fatalf("create image %s: %v", what, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := imagedata.Upload(ctx, c.image, im.ID, f).ExtractErr(); err != nil {
		t.Fatalf("upload image %s: %v", what, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		got, err := images.Get(ctx, c.image, im.ID).Extract()
		if err == nil && got.Status == images.ImageStatusActive {
			return im.ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s not active within a minute: %+v %v", what, got, err)
		}
	}
}

func (c *osCloud) flavor() string {
	t := c.t
	ctx := context.Background()
	var id string
	flavors.ListDetail(c.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		fs, err := flavors.ExtractFlavors(p)
		for _, f := range fs {
			if f.Name == osTestPrefix+"small" {
				id = f.ID
			}
		}
		return true, err
	})
	if id != "" {
		return id
	}
	disk := 1
	f, err := flavors.Create(ctx, c.compute, flavors.CreateOpts{Name: osTestPrefix + "small", RAM: 256, VCPUs: 1, Disk: &disk}).Extract()
	if err != nil {
		t.Fatalf("create flavor: %v", err)
	}
	return f.ID
}

type bootResult struct {
	id          string
	active, sum time.Duration // from the create request
}

// boot creates a server with no network, waits until it is ACTIVE (polling the API every
// 0.2 s), then for the guest's checksum line in its console log (the file, polled; then
// through nova's console API too), and checks that line.
func (c *osCloud) boot(name, imageID, flavor, wantLine string) bootResult {
	t := c.t
	t.Helper()
	ctx := context.Background()
	t0 := time.Now()
	s, err := servers.Create(ctx, c.compute, servers.CreateOpts{Name: osTestPrefix + name, ImageRef: imageID,
		FlavorRef: flavor, Networks: "none"}, nil).Extract()
	if err != nil {
		t.Fatalf("server create %s: %v", name, err)
	}
	r := bootResult{id: s.ID}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		got, err := servers.Get(ctx, c.compute, s.ID).Extract()
		if err == nil && got.Status == "ACTIVE" {
			r.active = time.Since(t0)
			break
		}
		if err == nil && got.Status == "ERROR" {
			t.Fatalf("server %s is in ERROR: %v\nnova-compute log:\n%s", name, got.Fault, tail(filepath.Join(c.dir, "log", "nova-compute.log"), 60))
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s not ACTIVE within 5 min (%+v, %v)", name, got, err)
		}
	}
	console := filepath.Join(c.inst, s.ID, "console.log")
	line, _ := agenttest.WaitConsole(t, console, "BASEFS-GUEST sha256=", 3*time.Minute)
	r.sum = time.Since(t0)
	if line != wantLine {
		t.Fatalf("server %s: the guest printed %q, want %q", name, line, wantLine)
	}
	out, err := servers.ShowConsoleOutput(ctx, c.compute, s.ID, servers.ShowConsoleOutputOpts{}).Extract()
	if err != nil || !strings.Contains(strings.ReplaceAll(out, "\r", ""), wantLine+"\n") {
		t.Errorf("nova's console API for server %s: %v\n%s", name, err, out)
	}
	return r
}

func (c *osCloud) deleteServer(id string) {
	t := c.t
	ctx := context.Background()
	if err := servers.Delete(ctx, c.compute, id).ExtractErr(); err != nil {
		if gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		t.Errorf("delete server %s: %v", id, err)
		return
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		_, err := servers.Get(ctx, c.compute, id).Extract()
		if gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("server %s not gone 2 min after its delete (%v)", id, err)
			return
		}
	}
}

// checkOverlay: instances/<uuid>/disk is a qcow2 overlay whose backing file is the base
// file, a file on the basefs mount.
func (c *osCloud) checkOverlay(id, wantBacking, mnt string) {
	t := c.t
	disk := filepath.Join(c.inst, id, "disk")
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", disk).Output()
	if err != nil {
		t.Fatalf("qemu-img info -U %s: %v", disk, err)
	}
	var info struct {
		Format        string `json:"format"`
		BackingFile   string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.BackingFile != wantBacking {
		t.Fatalf("%s: format %s, backing file %q; want a qcow2 overlay on %s", disk, info.Format, info.BackingFile, wantBacking)
	}
	var fb, fm unix.Stat_t
	if unix.Stat(info.BackingFile, &fb) != nil || unix.Stat(mnt, &fm) != nil || fb.Dev != fm.Dev {
		t.Fatalf("the backing file %s is not on the basefs mount %s", info.BackingFile, mnt)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Type != 0x65735546 {
		t.Fatalf("%s is not a FUSE mount (statfs type %x, %v)", mnt, sfs.Type, err)
	}
}

// osEnviron is the test's environment with its OS_* replaced by vars.
func osEnviron(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// readOpenrc reads the `export K=V` lines start-openstack.sh writes.
func readOpenrc(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "="); ok && strings.HasPrefix(l, "export OS_") {
			vars[k] = v
		}
	}
	return vars
}

var glanceFileGET = regexp.MustCompile(`"GET /v2/images/([0-9a-f-]{36})/file HTTP/1\.[01]" (200|206) (\d+)`)

// glanceServed sums the bytes Glance's access log (eventlet's) records for GET …/file
// requests after offset, by image id (response headers included: a few hundred bytes each).
func glanceServed(t *testing.T, path string, offset int64) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(offset, io.SeekStart)
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := glanceFileGET.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.ParseInt(m[3], 10, 64)
			out[m[1]] += n
		}
	}
	return out
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func isMount(p string) bool {
	var a, b unix.Stat_t
	if err := unix.Lstat(p, &a); err != nil {
		return err == unix.ENOTCONN // a dead FUSE daemon's mount: still a mount
	}
	if unix.Lstat(filepath.Dir(p), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

func xattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func tail(p string, n int) string {
	b, _ := os.ReadFile(p)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// holdInitrd writes the guest's initrd followed by a second newc cpio archive (the kernel
// unpacks both, the later wins) holding a new /init that defines a shell function poweroff
// (it prints "BASEFS-GUEST holding" and sleeps) and sources the guest's own /init, kept as
// /init.orig: the guest stays up after its checks, so nova's console API can show them and
// `server delete` ends it — as scripts/run-openstack.sh does.
func holdInitrd(t *testing.T, src, dst string) {
	t.Helper()
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	arc, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var init []byte
	for off := 0; off+110 <= len(arc); {
		if string(arc[off:off+6]) != "070701" {
			t.Fatalf("initrd: not a newc cpio archive at %d", off)
		}
		field := func(k int) int {
			v, _ := strconv.ParseUint(string(arc[off+6+8*k:off+14+8*k]), 16, 32)
			return int(v)
		}
		size, namesize := field(6), field(11)
		name := string(arc[off+110 : off+110+namesize-1])
		off += 110 + namesize
		off += -off & 3
		body := arc[off : off+size]
		off += size
		off += -off & 3
		if name == "TRAILER!!!" {
			break
		}
		if name == "init" || name == "./init" {
			init = body
		}
	}
	if init == nil {
		t.Fatal("initrd: no /init")
	}
	wrapper := []byte(`#!/bin/sh
# From basefs cmd/basefs/openstack_test.go: the test guest's /init (now /init.orig), its final
# poweroff replaced by a wait, so that nova's console API (a running guest's console only) can
# show what it printed. Deleting the server ends the guest.
poweroff() {
	echo "BASEFS-GUEST holding: poweroff replaced by the test"
	while :; do sleep 3600; done
}
. /init.orig
`)
	var out bytes.Buffer
	entry := func(ino, mode int, name string, data []byte) {
		name += "\x00"
		fmt.Fprintf(&out, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0)
		out.WriteString(name)
		out.Write(make([]byte, -out.Len()&3))
		out.Write(data)
		out.Write(make([]byte, -out.Len()&3))
	}
	entry(1, 0o100755, "init.orig", init)
	entry(2, 0o100755, "init", wrapper)
	entry(3, 0, "TRAILER!!!", nil)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(out.Bytes())
	zw.Close()
	if err := os.WriteFile(dst, append(orig, gz.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
}
