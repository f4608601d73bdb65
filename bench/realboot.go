package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/chunkstore"
)

// The real-boot scenario boots a real operating system (scripts/build-os-image.sh: Debian
// bookworm with systemd and its own kernel) to its serial login prompt, the ways a host can
// get its base image.

// Link is one shaped origin link of the real-boot scenario.
type Link struct {
	Bandwidth float64       // bits per second
	Latency   time.Duration // before each response
}

func (l Link) String() string { return bandwidthText(l.Bandwidth) + " + " + l.Latency.String() }

// DefaultRealLinks are the links of issue 16: a data-centre link and a slow, far one.
var DefaultRealLinks = []Link{{1e9, time.Millisecond}, {100e6, 20 * time.Millisecond}}

// Real-boot ways.
const (
	rbLocal   = "local raw file"
	rbLazy    = "basefs cold lazy"
	rbProfile = "basefs cold + boot profile"
	rbWarm    = "basefs warm"
	rbEager   = "nova eager"
)

const (
	osMemory     = "512M"
	osMemoryKiB  = 512 * 1024
	osCmdline    = "root=/dev/vda ro console=ttyS0 panic=-1"
	loginTimeout = 6 * time.Minute
	osRawName    = "debian-12.raw"
	osQcow2Name  = "debian-12.qcow2"
)

// osImage is the built real OS image, its kernel and initrd copied world-readable into the
// work directory.
type osImage struct {
	dir            string // where the script built it
	raw, qcow2     string // in dir
	kernel, initrd string // copies in the work directory
	build          map[string]any
}

// osImage returns the real OS image. Without Options.OSImageDir it is built (or found built)
// by scripts/build-os-image.sh into <repo>/.cache/os-image.
func (e *env) osImage(ctx context.Context) (*osImage, error) {
	src := e.opts.OSImageDir
	if src == "" {
		root, err := repoRoot()
		if err != nil {
			return nil, err
		}
		src = filepath.Join(root, ".cache", "os-image")
		e.logf("OS image: scripts/build-os-image.sh %s (a first build takes ~1–2 min)", src)
		if _, err := command(ctx, filepath.Join(root, "scripts", "build-os-image.sh"), src); err != nil {
			return nil, fmt.Errorf("building the OS image: %w", err)
		}
	}
	img := &osImage{dir: src, raw: filepath.Join(src, osRawName), qcow2: filepath.Join(src, osQcow2Name)}
	for _, p := range []string{img.raw, img.qcow2} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("OS image: %w", err)
		}
	}
	dst, err := e.dir("os")
	if err != nil {
		return nil, err
	}
	img.kernel, img.initrd = filepath.Join(dst, "vmlinuz"), filepath.Join(dst, "initrd.img")
	if err := copyFile(filepath.Join(src, "vmlinuz"), img.kernel); err != nil {
		return nil, fmt.Errorf("OS image: %w", err)
	}
	if err := copyFile(filepath.Join(src, "initrd.img"), img.initrd); err != nil {
		return nil, fmt.Errorf("OS image: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(src, "build.json")); err == nil {
		json.Unmarshal(b, &img.build)
	}
	return img, nil
}

// loginBoot is one boot's measurements, times in seconds from the start of the spawn (of
// the download, for nova's eager path).
type loginBoot struct {
	Running        float64 // libvirt reports the domain running
	Login          float64 // "login:" on the serial console
	Download       float64 // eager: download and conversion
	OriginBytes    int64   // through the shaped link, start → login
	OriginRequests int64
	GuestBytes     int64 // the guest's reads of vda (rd_bytes) at login
	GuestReads     int64 // rd_req
	MountBytes     int64 // basefs ways: bytes read through the mount, start → login
	ChunkBytes     int64 // basefs ways: uncompressed chunk bytes the daemon fetched, start → login
}

// loginWatch waits for "login:" in the console log at path (which may not exist yet) and
// notes the shaper's counters at that moment. It gives up early on a kernel panic or the
// initramfs dropping to a shell.
func loginWatch(ctx context.Context, path string, sh *Shaper, timeout time.Duration) (at time.Time, originBytes, originReqs int64, err error) {
	deadline := time.Now().Add(timeout)
	var text []byte
	var off int64
	buf := make([]byte, 64<<10)
	for {
		if f, err := os.Open(path); err == nil {
			for {
				n, _ := f.ReadAt(buf, off)
				if n <= 0 {
					break
				}
				text = append(text, buf[:n]...)
				off += int64(n)
			}
			f.Close()
		}
		if bytes.Contains(text, []byte("login:")) {
			at = time.Now()
			if sh != nil {
				originBytes, originReqs = sh.Bytes(), sh.Requests()
			}
			return at, originBytes, originReqs, nil
		}
		for _, bad := range []string{"Kernel panic", "Dropping to a shell", "Gave up waiting for root"} {
			if bytes.Contains(text, []byte(bad)) {
				time.Sleep(200 * time.Millisecond) // the rest of the message
				b, _ := os.ReadFile(path)
				return at, 0, 0, fmt.Errorf("guest failed to boot (%s); console: %q", bad, tail(string(b), 1500))
			}
		}
		if time.Now().After(deadline) {
			return at, 0, 0, fmt.Errorf("no login: prompt on the console within %s; console: %q", timeout, tail(string(text), 1500))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return at, 0, 0, err
		}
	}
}

// domainReads returns the guest's read counters of vda (virsh domblkstat: rd_bytes, rd_req).
func domainReads(name string) (rdBytes, rdReq int64, err error) {
	conn, err := libvirt.NewConnect(libvirtURI)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		return 0, 0, err
	}
	defer dom.Free()
	st, err := dom.BlockStats("vda")
	if err != nil {
		return 0, 0, err
	}
	return st.RdBytes, st.RdReq, nil
}

// realBoot boots the OS image's kernel and initrd on a disk whose base is reached one of the
// scenario's ways.
type realBoot struct {
	agent, instances, base string // the agent, its instances directory and the basefs mount
	novaInstances          string // nova's instances directory (plain _base)
	kernel, initrd         string
	virtType               string
	diskSize               int64
}

// agentBoot spawns instance id on image digest through `basefs-agent spawn` against daemon
// d, waits for login:, reads the counters, and terminates it.
func (b realBoot) agentBoot(ctx context.Context, d *daemon, sh *Shaper, id, digest string) (loginBoot, error) {
	var lb loginBoot
	st0, err := d.Status(ctx)
	if err != nil {
		return lb, err
	}
	c0, err := d.OriginBytes(ctx)
	if err != nil {
		return lb, err
	}
	console := filepath.Join(b.instances, id, agent.ConsoleFile)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b0, q0 := sh.Bytes(), sh.Requests()
	t0 := time.Now()
	var at time.Time
	var ob, oq int64
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() { at, ob, oq, werr = loginWatch(wctx, console, sh, loginTimeout) })
	_, err = command(ctx, b.agent, "spawn", "--instance", id, "--image", digest, "--disk-size", fmt.Sprint(b.diskSize),
		"--memory", osMemory, "--virt-type", b.virtType, "--kernel", b.kernel, "--initrd", b.initrd, "--cmdline", osCmdline,
		"--instances-path", b.instances, "--base", b.base, "--json")
	lb.Running = time.Since(t0).Seconds()
	defer command(context.Background(), b.agent, "terminate", "--instance", id, "--instances-path", b.instances)
	if err != nil {
		cancel()
		wg.Wait()
		return lb, err
	}
	wg.Wait()
	if werr != nil {
		return lb, werr
	}
	lb.Login = at.Sub(t0).Seconds()
	lb.OriginBytes, lb.OriginRequests = ob-b0, oq-q0
	if lb.GuestBytes, lb.GuestReads, err = domainReads(agent.DomainName(id)); err != nil {
		return lb, fmt.Errorf("block stats: %w", err)
	}
	st1, err := d.Status(ctx)
	if err != nil {
		return lb, err
	}
	lb.MountBytes = st1.Stats.BytesRead - st0.Stats.BytesRead
	c1, err := d.OriginBytes(ctx)
	if err != nil {
		return lb, err
	}
	lb.ChunkBytes = c1 - c0
	return lb, nil
}

// plainBoot boots as nova does on a plain _base: with qcow2URL, nova's eager path first —
// download the qcow2 image over the link into _base, `qemu-img convert -t none -O raw` it as
// nova's fetch_to_raw does, rename — then a qcow2 overlay on the raw base, the domain
// defined and started through libvirt with the agent's devices, login:, destroy. With
// trace, qemu logs every guest read (trace event blk_co_preadv) to that file.
func (b realBoot) plainBoot(ctx context.Context, sh *Shaper, name, backing, qcow2URL, trace string) (loginBoot, error) {
	var lb loginBoot
	dir := filepath.Join(b.novaInstances, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return lb, err
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var b0, q0 int64
	if sh != nil {
		b0, q0 = sh.Bytes(), sh.Requests()
	}
	t0 := time.Now()
	var at time.Time
	var ob, oq int64
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() { at, ob, oq, werr = loginWatch(wctx, console, sh, loginTimeout) })
	fail := func(err error) (loginBoot, error) {
		cancel()
		wg.Wait()
		return lb, err
	}
	if qcow2URL != "" {
		part := backing + ".part"
		if _, err := download(ctx, qcow2URL, part); err != nil {
			os.Remove(part)
			return fail(fmt.Errorf("download: %w", err))
		}
		conv := backing + ".converted"
		_, err := command(ctx, "qemu-img", "convert", "-t", "none", "-f", "qcow2", "-O", "raw", part, conv)
		os.Remove(part)
		if err == nil {
			err = os.Chmod(conv, 0o644)
		}
		if err == nil {
			err = os.Rename(conv, backing)
		}
		if err != nil {
			os.Remove(conv)
			return fail(err)
		}
		lb.Download = time.Since(t0).Seconds()
	}
	disk := filepath.Join(dir, "disk")
	if _, err := command(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", disk, fmt.Sprint(b.diskSize)); err != nil {
		return fail(err)
	}
	conn, err := libvirt.NewConnect(libvirtURI)
	if err != nil {
		return fail(fmt.Errorf("libvirt: %w", err))
	}
	defer conn.Close()
	def := plainDomain(name, b.virtType, disk, backing, console, b.kernel, b.initrd, osCmdline)
	def.Memory = &libvirtxml.DomainMemory{Value: osMemoryKiB, Unit: "KiB"}
	if trace != "" {
		def.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
			{Value: "-trace"}, {Value: "enable=blk_co_preadv,file=" + trace},
		}}
	}
	doc, err := def.Marshal()
	if err != nil {
		return fail(err)
	}
	dom, err := conn.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
	if err != nil {
		return fail(fmt.Errorf("libvirt: define %s: %w", name, err))
	}
	defer func() {
		dom.Destroy()
		dom.Undefine()
		dom.Free()
	}()
	if err := dom.Create(); err != nil {
		return fail(fmt.Errorf("libvirt: start %s: %w", name, err))
	}
	if err := waitRunning(ctx, dom); err != nil {
		return fail(fmt.Errorf("libvirt: start %s: %w", name, err))
	}
	lb.Running = time.Since(t0).Seconds()
	wg.Wait()
	if werr != nil {
		return lb, werr
	}
	lb.Login = at.Sub(t0).Seconds()
	lb.OriginBytes, lb.OriginRequests = ob-b0, oq-q0
	st, err := dom.BlockStats("vda")
	if err != nil {
		return lb, fmt.Errorf("block stats: %w", err)
	}
	lb.GuestBytes, lb.GuestReads = st.RdBytes, st.RdReq
	return lb, nil
}

// readTrace parses qemu's blk_co_preadv trace lines ("… offset N bytes M …") into extents.
func readTrace(path string) ([]extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var xs []extent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasSuffix(fields[0], "blk_co_preadv") {
			continue
		}
		var x extent
		ok := 0
		for i := 1; i+1 < len(fields); i++ {
			switch fields[i] {
			case "offset":
				if v, err := strconv.ParseInt(fields[i+1], 10, 64); err == nil {
					x.Off, ok = v, ok+1
				}
			case "bytes":
				if v, err := strconv.ParseInt(fields[i+1], 10, 64); err == nil {
					x.Len, ok = v, ok+1
				}
			}
		}
		if ok == 2 && x.Len > 0 {
			xs = append(xs, x)
		}
	}
	return xs, sc.Err()
}

// granuleUse is what reading extents costs at a fetch granularity g (a chunk size): the
// g-aligned blocks they touch, less those that are all zeros in the image (holes: basefs never
// fetches them) and repeats of a block already counted (same content: one chunk).
type granuleUse struct {
	Granule int64
	Blocks  int64 // distinct touched blocks with data: one request each, fetched whole
	Bytes   int64 // their bytes (the last block clipped to the image)
	Stored  int64 // their stored form, as basefs stores a chunk (header + zstd when it saves ≥ 1/16): the bytes on the wire
}

// granuleCosts computes granuleUse for each granularity, reading the image to tell zero and
// repeated blocks and to encode each as a chunk object.
func granuleCosts(image string, size int64, xs []extent, granules []int64) ([]granuleUse, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []granuleUse
	for _, g := range granules {
		touched := map[int64]bool{}
		for _, x := range xs {
			for b := x.Off / g; b <= (x.Off+x.Len-1)/g; b++ {
				touched[b] = true
			}
		}
		u := granuleUse{Granule: g}
		buf := make([]byte, g)
		seen := map[[32]byte]bool{}
		for b := range touched {
			n := min(g, size-b*g)
			if n <= 0 {
				continue
			}
			if _, err := f.ReadAt(buf[:n], b*g); err != nil {
				return nil, err
			}
			if allZero(buf[:n]) {
				continue
			}
			h := sha256.Sum256(buf[:n])
			if seen[h] {
				continue
			}
			seen[h] = true
			hdr, payload := chunkstore.EncodeObject(buf[:n])
			u.Blocks++
			u.Bytes += n
			u.Stored += int64(len(hdr) + len(payload))
		}
		out = append(out, u)
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// uniqueBytes is the size of the union of the extents.
func uniqueBytes(xs []extent) int64 {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b extent) int { return cmp.Compare(a.Off, b.Off) })
	var n, end int64
	for _, x := range s {
		if x.Off+x.Len <= end {
			continue
		}
		start := max(x.Off, end)
		n += x.Off + x.Len - start
		end = x.Off + x.Len
	}
	return n
}

// recordProfile boots the image once on a fresh basefs state (a previous host) with boot
// profile recording on, and returns the profile that host recorded (its encoded bytes), its
// chunk count, and that boot's time to login.
func (e *env) recordProfile(ctx context.Context, b realBoot, sh *Shaper, originURL, digest string, window time.Duration) ([]byte, int, float64, error) {
	state := filepath.Join(e.work, "real-boot", "basefs", "state-recorder")
	d, err := e.startDaemon(ctx, state, b.base, []string{originURL}, "--instances-path", b.instances, "--profile-window", window.String())
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() {
		d.Stop()
		os.RemoveAll(state)
	}()
	lb, err := b.agentBoot(ctx, d, sh, fmt.Sprintf("bench%d-record", os.Getpid()), digest)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w; daemon log: %s", err, tail(d.Log(), 800))
	}
	// The profile is written when the window (from the image's first read) closes.
	path := filepath.Join(state, "profiles", digest)
	deadline := time.Now().Add(window + 30*time.Second)
	for {
		if p, err := os.ReadFile(path); err == nil {
			lines := bytes.Count(p, []byte("\n"))
			return p, max(0, lines-2), lb.Login, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, 0, fmt.Errorf("no boot profile at %s %s after the boot; daemon log: %s", path, window+30*time.Second, tail(d.Log(), 800))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil, 0, 0, err
		}
	}
}

// runRealBoot: the real OS image to its login prompt — basefs cold lazy, cold with a boot
// profile from a previous host, warm; nova's eager path; a local raw file — over each link.
func runRealBoot(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needLibvirt(ctx); err != nil {
		return err
	}
	o := e.opts
	agentBin, err := findBinary(o.BinDir, "basefs-agent")
	if err != nil {
		return err
	}
	img, err := e.osImage(ctx)
	if err != nil {
		return err
	}
	var cl cleanups
	defer cl.run()
	www, err := e.dir("real-boot", "www")
	if err != nil {
		return err
	}
	rawDir, _ := e.dir("real-boot", "www", "raw")
	pub, _ := e.dir("real-boot", "www", "pub")
	originState, _ := e.dir("real-boot", "origin-state")
	instances, _ := e.dir("real-boot", "basefs", "instances")
	mount, _ := e.dir("real-boot", "basefs", "instances", "_base")
	novaInst, _ := e.dir("real-boot", "nova", "instances")
	novaBase, _ := e.dir("real-boot", "nova", "instances", "_base")
	localDir, _ := e.dir("real-boot", "local")
	traceDir, _ := e.dir("real-boot", "trace")
	os.Chmod(traceDir, 0o777) // qemu (libvirt-qemu) writes the trace

	// The local raw file (sparse copy), the qcow2 form on the origin, the published layout.
	localRaw := filepath.Join(localDir, osRawName)
	if _, err := command(ctx, "cp", "--sparse=always", img.raw, localRaw); err != nil {
		return err
	}
	os.Chmod(localRaw, 0o644)
	if err := copyFile(img.qcow2, filepath.Join(rawDir, osQcow2Name)); err != nil {
		return err
	}
	fi, err := os.Stat(localRaw)
	if err != nil {
		return err
	}
	size := fi.Size()
	alloc, _ := allocatedBytes(localRaw)
	qfi, err := os.Stat(img.qcow2)
	if err != nil {
		return err
	}
	e.logf("importing and publishing the OS image (%s, %s allocated)", sizeText(size), mibText(alloc))
	imp, err := e.importImage(ctx, originState, localRaw)
	if err != nil {
		return err
	}
	if err := e.publish(ctx, originState, pub, imp.Digest); err != nil {
		return err
	}
	pubBytes, _ := treeBytes(filepath.Join(pub, "chunks"))

	r.Measures = fmt.Sprintf("A real operating system — Debian 12 (bookworm) minbase with systemd, udev and its own kernel "+
		"and initramfs, built by `scripts/build-os-image.sh` — boots by direct kernel boot (%s, TCG here) on a qcow2 "+
		"overlay over its base image; time runs from the start of the spawn (of the download, for nova) to `login:` "+
		"on the serial console (systemd's serial getty). Five ways, alternating order run by run: **%s** — "+
		"`basefs-agent spawn` on a `basefs mount` with an empty state whose origin is the published layout served "+
		"over HTTP through the shaping proxy; **%s** — the same on another empty state that holds only the boot "+
		"profile a previous host recorded (its chunks are fetched ahead, in order; the profile itself is copied "+
		"into the state: an http:// origin does not serve profiles); **%s** — a second spawn on the lazy boot's "+
		"daemon; **%s** — nova's path: download the qcow2 image (what Glance usually holds) over the same link "+
		"into a plain _base, `qemu-img convert -t none -O raw` (fetch_to_raw), `qemu-img create` a qcow2 overlay, "+
		"define and start the domain through libvirt with the agent's devices; **%s** — that boot from the raw "+
		"file already on local disk (the floor). Origin bytes are counted at the proxy from the start to login:; "+
		"bytes the guest read are qemu's block statistics of vda at login: (virsh domblkstat rd_bytes). One "+
		"extra local boot logs every guest read (qemu trace event blk_co_preadv) to show what each fetch "+
		"granularity would cost.",
		o.VirtType, rbLazy, rbProfile, rbWarm, rbEager, rbLocal)
	bi := func(k string) string {
		if v, ok := img.build[k]; ok {
			return fmt.Sprint(v)
		}
		return "?"
	}
	r.set("image", "Debian 12 bookworm, kernel %s, %s packages; raw %s (%s allocated), qcow2 %s; built in %s s (%s s debootstrap)",
		bi("kernel"), bi("packages"), sizeText(size), mibText(alloc), mibText(qfi.Size()), bi("seconds_total"), bi("seconds_debootstrap"))
	r.set("published layout", "%d chunks of 1 MiB, %d of them holes; %d data chunks (%s) stored in %s of chunk objects (zstd where it saves)",
		imp.Chunks, imp.Holes, imp.Chunks-imp.Holes, mibText(int64(imp.Chunks-imp.Holes)*MiB), mibText(pubBytes))
	var links []string
	for _, l := range o.RealLinks {
		links = append(links, l.String())
	}
	r.set("origin links", "%s (a shaping reverse proxy in front of Go's http.FileServer on loopback)", strings.Join(links, "; "))
	r.set("guest", "1 vCPU, %s, virt type %s, disk cache=none, cmdline `%s`", osMemory, o.VirtType, osCmdline)
	r.set("daemon", "`basefs mount` defaults (1 MiB chunks) with background fill and scrub off")
	r.set("runs", "%d per link and way", o.Runs)

	b := realBoot{agent: agentBin, instances: instances, base: mount, novaInstances: novaInst,
		kernel: img.kernel, initrd: img.initrd, virtType: o.VirtType, diskSize: size}
	seq := 0
	nextID := func() string {
		seq++
		return fmt.Sprintf("bench%d-%d", os.Getpid(), seq)
	}

	// What the guest reads: one traced local boot.
	trace := filepath.Join(traceDir, "blk.trace")
	e.logf("traced local boot (every guest read logged)")
	tb, err := b.plainBoot(ctx, nil, "basefsbench-"+nextID(), localRaw, "", trace)
	if err != nil {
		return fmt.Errorf("traced boot: %w", err)
	}
	xs, err := readTrace(trace)
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if len(xs) == 0 {
		return fmt.Errorf("trace %s: no blk_co_preadv lines (qemu built without the log trace backend?)", trace)
	}
	granules := []int64{4 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, MiB, 2 * MiB, 4 * MiB}
	gu, err := granuleCosts(localRaw, size, xs, granules)
	if err != nil {
		return err
	}
	var at1M granuleUse // the default chunk size's row
	for _, u := range gu {
		if u.Granule == MiB {
			at1M = u
		}
	}
	uniq := uniqueBytes(xs)
	var sum int64
	for _, x := range xs {
		sum += x.Len
	}
	e.logf("traced boot: login %.1f s, %d reads, %s read, %s distinct; 1 MiB chunks touched: %d, %s stored", tb.Login, len(xs), mibText(sum), mibText(uniq), at1M.Blocks, mibText(at1M.Stored))

	got := series{}
	var profile []byte
	var profChunks int
	var recLogin float64
	for li, link := range o.RealLinks {
		org, err := startOrigin(www, link.Bandwidth, link.Latency)
		if err != nil {
			return err
		}
		cl.add(org.Close)
		if li == 0 {
			e.logf("recording the boot profile on a previous host (window %s, link %s)", o.ProfileWindow, link)
			profile, profChunks, recLogin, err = e.recordProfile(ctx, b, org.Shaper, org.URL+"/pub/", imp.Digest, o.ProfileWindow)
			if err != nil {
				return fmt.Errorf("recording the boot profile: %w", err)
			}
			e.logf("boot profile: %d chunks (that boot reached login: in %.1f s)", profChunks, recLogin)
		}
		for run := range o.Runs {
			order := []string{rbLocal, rbLazy, rbWarm, rbProfile, rbEager}
			if run%2 == 1 {
				order = []string{rbEager, rbProfile, rbLazy, rbWarm, rbLocal}
			}
			var d *daemon
			for _, v := range order {
				id := nextID()
				var lb loginBoot
				var err error
				switch v {
				case rbLazy, rbProfile:
					state := filepath.Join(e.work, "real-boot", "basefs", "state-"+id)
					if v == rbProfile {
						p := filepath.Join(state, "profiles", imp.Digest)
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							return err
						}
						if err := os.WriteFile(p, profile, 0o644); err != nil {
							return err
						}
					}
					d, err = e.startDaemon(ctx, state, mount, []string{org.URL + "/pub/"}, "--instances-path", instances)
					if err != nil {
						return err
					}
					lb, err = b.agentBoot(ctx, d, org.Shaper, id, imp.Digest)
					if v == rbProfile && err == nil {
						d.Stop()
						os.RemoveAll(d.State)
						d = nil
					}
				case rbWarm:
					lb, err = b.agentBoot(ctx, d, org.Shaper, id, imp.Digest)
					d.Stop()
					os.RemoveAll(d.State)
					d = nil
				case rbEager:
					backing := filepath.Join(novaBase, osRawName)
					lb, err = b.plainBoot(ctx, org.Shaper, "basefsbench-"+id, backing, org.URL+"/raw/"+osQcow2Name, "")
					os.Remove(backing)
				case rbLocal:
					lb, err = b.plainBoot(ctx, org.Shaper, "basefsbench-"+id, localRaw, "", "")
				}
				if err != nil {
					if d != nil {
						err = fmt.Errorf("%w; daemon log: %s", err, tail(d.Log(), 800))
						d.Stop()
						os.RemoveAll(d.State)
					}
					return fmt.Errorf("%s, %s, run %d: %w", link, v, run+1, err)
				}
				k := func(m string) string { return key(v, li, m) }
				got.add(k("login"), lb.Login)
				got.add(k("running"), lb.Running)
				got.add(k("origin"), float64(lb.OriginBytes)/float64(MiB))
				got.add(k("requests"), float64(lb.OriginRequests))
				got.add(k("guest"), float64(lb.GuestBytes)/float64(MiB))
				got.add(k("guestreqs"), float64(lb.GuestReads))
				if lb.GuestBytes > 0 {
					got.add(k("amp"), float64(lb.OriginBytes)/float64(lb.GuestBytes))
				}
				extra := ""
				switch v {
				case rbEager:
					got.add(k("download"), lb.Download)
					extra = fmt.Sprintf(", download+convert %.1f s", lb.Download)
				case rbLazy, rbProfile, rbWarm:
					got.add(k("mount"), float64(lb.MountBytes)/float64(MiB))
					got.add(k("chunks"), float64(lb.ChunkBytes)/float64(MiB))
					if lb.GuestBytes > 0 {
						got.add(k("chunkamp"), float64(lb.ChunkBytes)/float64(lb.GuestBytes))
					}
					extra = fmt.Sprintf(", chunks fetched %s uncompressed, read through the mount %s", mibText(lb.ChunkBytes), mibText(lb.MountBytes))
				}
				e.logf("%s run %d/%d %-27s login %5.1f s, origin %s in %d requests, guest read %s (%d reads)%s",
					link, run+1, o.Runs, v, lb.Login, mibText(lb.OriginBytes), lb.OriginRequests, mibText(lb.GuestBytes), lb.GuestReads, extra)
			}
		}
		org.Close()
	}

	// Rows.
	s := func(v string, li int, m string) []float64 { return got[key(v, li, m)] }
	for li, link := range o.RealLinks {
		L := link.String()
		login := func(v, base string) Row {
			return r.add("spawn → login:, "+L, "s", "lower", v, s(v, li, "login"), base, s(base, li, "login"))
		}
		lazyLocal := login(rbLazy, rbLocal)
		profLocal := login(rbProfile, rbLocal)
		warmLocal := login(rbWarm, rbLocal)
		eagerLocal := login(rbEager, rbLocal)
		lazyEager := login(rbLazy, rbEager)
		login(rbProfile, rbEager)
		r.add("spawn → running (provisioning), "+L, "s", "lower", rbLazy, s(rbLazy, li, "running"), rbEager, s(rbEager, li, "running"))
		lazyO := r.add("origin bytes (start → login:), "+L, "MiB", "lower", rbLazy, s(rbLazy, li, "origin"), rbEager, s(rbEager, li, "origin"))
		profO := r.add("origin bytes (start → login:), "+L, "MiB", "lower", rbProfile, s(rbProfile, li, "origin"), rbEager, s(rbEager, li, "origin"))
		r.add("origin bytes (start → login:), "+L, "MiB", "lower", rbWarm, s(rbWarm, li, "origin"), "", nil)
		lazyA := r.add("origin bytes ÷ bytes the guest read, "+L, "×", "lower", rbLazy, s(rbLazy, li, "amp"), rbEager, s(rbEager, li, "amp"))
		profA := r.add("origin bytes ÷ bytes the guest read, "+L, "×", "lower", rbProfile, s(rbProfile, li, "amp"), rbEager, s(rbEager, li, "amp"))
		lazyC := r.add("chunk bytes fetched, uncompressed (the daemon's count, start → login:), "+L, "MiB", "lower", rbLazy, s(rbLazy, li, "chunks"), rbProfile, s(rbProfile, li, "chunks"))
		lazyCA := r.add("uncompressed chunk bytes fetched ÷ bytes the guest read, "+L, "×", "lower", rbLazy, s(rbLazy, li, "chunkamp"), rbProfile, s(rbProfile, li, "chunkamp"))
		r.add("origin requests (start → login:), "+L, "", "lower", rbLazy, s(rbLazy, li, "requests"), rbProfile, s(rbProfile, li, "requests"))
		guest := r.add("bytes the guest read (rd_bytes at login:), "+L, "MiB", "lower", rbLazy, s(rbLazy, li, "guest"), rbLocal, s(rbLocal, li, "guest"))
		r.add("bytes read through the mount (start → login:), "+L, "MiB", "lower", rbLazy, s(rbLazy, li, "mount"), rbWarm, s(rbWarm, li, "mount"))
		dl := Summarize(s(rbEager, li, "download"))
		r.note("%s, nova eager: download of the %s qcow2 and conversion took %s s (median; %s–%s) of its %s s to login:.",
			L, mibText(qfi.Size()), fmtNum(dl.Median), fmtNum(dl.Min), fmtNum(dl.Max), fmtNum(eagerLocal.Basefs.Median))
		r.highlight("%s: spawn → login: local raw %s s; basefs cold lazy %s s (%s× local), with a boot profile %s s (%s× local), warm %s s (%s× local); nova eager %s s (%s× local; lazy ÷ eager %s)",
			L, fmtNum(lazyLocal.Baseline.Median), fmtNum(lazyLocal.Basefs.Median), ratioOf(lazyLocal),
			fmtNum(profLocal.Basefs.Median), ratioOf(profLocal), fmtNum(warmLocal.Basefs.Median), ratioOf(warmLocal),
			fmtNum(eagerLocal.Basefs.Median), ratioOf(eagerLocal), ratioOf(lazyEager))
		r.highlight("%s: origin bytes lazy %s MiB = %s× the %s MiB the guest read (compressed chunk objects; uncompressed %s MiB = %s×); with a boot profile %s MiB (%s×); nova eager %s MiB (%s×)",
			L, fmtNum(lazyO.Basefs.Median), fmtNum(lazyA.Basefs.Median), fmtNum(guest.Basefs.Median),
			fmtNum(lazyC.Basefs.Median), fmtNum(lazyCA.Basefs.Median),
			fmtNum(profO.Basefs.Median), fmtNum(profA.Basefs.Median), fmtNum(lazyO.Baseline.Median), fmtNum(lazyA.Baseline.Median))
	}
	// Issue 16's targets, stated against the figures above.
	if len(o.RealLinks) == 2 {
		lazy1 := ratioOfMedians(s(rbLazy, 0, "login"), s(rbLocal, 0, "login"))
		prof2 := ratioOfMedians(s(rbProfile, 1, "login"), s(rbLocal, 1, "login"))
		amp := max(Summarize(s(rbLazy, 0, "amp")).Median, Summarize(s(rbLazy, 1, "amp")).Median)
		camp := max(Summarize(s(rbLazy, 0, "chunkamp")).Median, Summarize(s(rbLazy, 1, "chunkamp")).Median)
		r.highlight("issue 16 targets: origin bytes ÷ guest read ≤ 1.5× (lazy, worse link): %s %s — on the wire, compressed; uncompressed chunk bytes ÷ guest read %s %s; lazy ÷ local ≤ 1.1× at %s: %s %s; with profile ÷ local ≤ 1.3× at %s: %s %s",
			fmtNum(amp), met(amp <= 1.5), fmtNum(camp), met(camp <= 1.5), o.RealLinks[0], fmtNum(lazy1), met(lazy1 <= 1.1), o.RealLinks[1], fmtNum(prof2), met(prof2 <= 1.3))
	}

	// What the guest read, and what each fetch granularity would cost.
	r.add("traced boot: bytes the guest read (blk_co_preadv, sum)", "MiB", "lower", rbLocal, []float64{float64(sum) / float64(MiB)}, "", nil)
	r.add("traced boot: distinct bytes the guest read", "MiB", "lower", rbLocal, []float64{float64(uniq) / float64(MiB)}, "", nil)
	for _, u := range gu {
		g := sizeText(u.Granule)
		r.add(fmt.Sprintf("traced boot, %s chunks: data chunks touched (one request each)", g), "", "lower",
			rbLocal, []float64{float64(u.Blocks)}, "", nil)
		r.add(fmt.Sprintf("traced boot, %s chunks: their bytes, uncompressed", g), "MiB", "lower",
			rbLocal, []float64{float64(u.Bytes) / float64(MiB)}, "", nil)
		r.add(fmt.Sprintf("traced boot, %s chunks: their stored objects (the bytes on the wire)", g), "MiB", "lower",
			rbLocal, []float64{float64(u.Stored) / float64(MiB)}, "", nil)
	}
	for li, link := range o.RealLinks {
		r.note("Model check, %s: the traced boot's 1 MiB chunks predict %d requests and %s on the wire; the cold lazy boots fetched %s uncompressed chunk bytes and took %s from the origin in %s requests (medians; the manifest is one more request).",
			link, at1M.Blocks, mibText(at1M.Stored), fmtNum(Summarize(s(rbLazy, li, "chunks")).Median)+" MiB",
			fmtNum(Summarize(s(rbLazy, li, "origin")).Median)+" MiB", fmtNum(Summarize(s(rbLazy, li, "requests")).Median))
	}
	hist := readSizeHistogram(xs)
	r.note("Traced boot: %d reads, %s in all, %s distinct; read sizes: %s.", len(xs), mibText(sum), mibText(uniq), hist)
	var costs []string
	for _, u := range gu {
		costs = append(costs, fmt.Sprintf("%s → %d chunks, %s (%s×), %s stored (%s×)", sizeText(u.Granule), u.Blocks,
			mibText(u.Bytes), fmtNum(float64(u.Bytes)/float64(uniq)), mibText(u.Stored), fmtNum(float64(u.Stored)/float64(uniq))))
	}
	r.highlight("what the guest reads (traced local boot): %s distinct bytes in %d reads; fetching the whole chunks they touch, by chunk size: %s",
		mibText(uniq), len(xs), strings.Join(costs, "; "))
	r.note("Boot profile: recorded by a previous host's cold lazy boot over %s with `--profile-window %s` (that boot reached login: in %.1f s): %d chunks (%s).",
		o.RealLinks[0], o.ProfileWindow, recLogin, profChunks, mibText(int64(profChunks)*MiB))

	// Figures.
	ways := []string{rbLocal, rbLazy, rbProfile, rbWarm, rbEager}
	bar := func(file, title, ylabel, m string, vs []string) Figure {
		f := Figure{File: file, Kind: "bar", Title: title, YLabel: ylabel, Labels: vs}
		for li, link := range o.RealLinks {
			sr := Series{Name: link.String()}
			for _, v := range vs {
				sr.Points = append(sr.Points, Summarize(s(v, li, m)))
			}
			f.Series = append(f.Series, sr)
		}
		return f
	}
	gf := Figure{File: "real-boot-granule", Kind: "line", Title: "Traced boot: data bytes in the blocks the guest's reads touch, by block size",
		XLabel: "block (chunk) size, KiB", YLabel: "MiB", LogX: true}
	var touched, stored, distinct Series
	touched.Name, stored.Name, distinct.Name = "touched chunks, uncompressed", "touched chunks, stored (on the wire)", "distinct bytes read"
	for _, u := range gu {
		gf.Labels = append(gf.Labels, sizeText(u.Granule))
		gf.X = append(gf.X, float64(u.Granule)/float64(KiB))
		touched.Points = append(touched.Points, Summarize([]float64{float64(u.Bytes) / float64(MiB)}))
		stored.Points = append(stored.Points, Summarize([]float64{float64(u.Stored) / float64(MiB)}))
		distinct.Points = append(distinct.Points, Summarize([]float64{float64(uniq) / float64(MiB)}))
	}
	gf.Series = []Series{touched, stored, distinct}
	r.Figures = append(r.Figures,
		bar("real-boot-login", "Real OS: spawn → login: on the serial console", "seconds (median, min–max)", "login", ways),
		bar("real-boot-origin", "Real OS: bytes taken from the origin (start → login:)", "MiB", "origin", []string{rbLazy, rbProfile, rbWarm, rbEager}),
		bar("real-boot-amp", "Real OS: origin bytes ÷ bytes the guest read", "×", "amp", []string{rbLazy, rbProfile, rbEager}),
		gf,
	)
	return nil
}

func ratioOfMedians(a, b []float64) float64 {
	mb := Summarize(b).Median
	if len(a) == 0 || mb == 0 {
		return 0
	}
	return Summarize(a).Median / mb
}

func met(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(not met)"
}

// mibText formats a byte count in MiB: "107.3 MiB".
func mibText(n int64) string { return fmtNum(float64(n)/float64(MiB)) + " MiB" }

// readSizeHistogram summarises read sizes: the most common ones with their counts.
func readSizeHistogram(xs []extent) string {
	count := map[int64]int{}
	for _, x := range xs {
		count[x.Len]++
	}
	sizes := make([]int64, 0, len(count))
	for k := range count {
		sizes = append(sizes, k)
	}
	slices.SortFunc(sizes, func(a, b int64) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return int(a - b)
	})
	var parts []string
	for i, k := range sizes {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", sizeText(k), count[k]))
	}
	return strings.Join(parts, ", ")
}
