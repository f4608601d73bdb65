package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/chunkstore/httpx"
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
		if err := httpx.Sleep(ctx, 20*time.Millisecond); err != nil {
			return at, 0, 0, err
		}
	}
}

// loginWait is one boot of the OS image from its start: the console watched in the
// background for login: (loginWatch), the shaper's counters (if any) taken at t0.
type loginWait struct {
	background
	t0              time.Time
	b0, q0          int64
	at              time.Time
	atBytes, atReqs int64 // the shaper's counters at login:
	err             error
}

// waitLogin starts a boot's clock and watches the console log at path.
func waitLogin(ctx context.Context, path string, sh *Shaper) *loginWait {
	l := &loginWait{}
	if sh != nil {
		l.b0, l.q0 = sh.Bytes(), sh.Requests()
	}
	l.t0 = time.Now()
	l.background = inBackground(ctx, func(ctx context.Context) { l.at, l.atBytes, l.atReqs, l.err = loginWatch(ctx, path, sh, loginTimeout) })
	return l
}

// since returns the seconds since the boot started.
func (l *loginWait) since() float64 { return time.Since(l.t0).Seconds() }

// finish waits for login: and notes in lb when it came and the origin traffic until then.
func (l *loginWait) finish(lb loginBoot) (loginBoot, error) {
	l.wait()
	if l.err != nil {
		return lb, l.err
	}
	lb.Login = l.at.Sub(l.t0).Seconds()
	lb.OriginBytes, lb.OriginRequests = l.atBytes-l.b0, l.atReqs-l.q0
	return lb, nil
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
	lw := waitLogin(ctx, filepath.Join(b.instances, id, agent.ConsoleFile), sh)
	_, err = command(ctx, b.agent, "spawn", "--instance", id, "--image", digest, "--disk-size", fmt.Sprint(b.diskSize),
		"--memory", osMemory, "--virt-type", b.virtType, "--kernel", b.kernel, "--initrd", b.initrd, "--kernel-dir", filepath.Dir(b.kernel), "--kernel-dir", filepath.Dir(b.initrd), "--cmdline", osCmdline,
		"--instances-path", b.instances, "--base", b.base, "--json")
	lb.Running = lw.since()
	defer command(context.Background(), b.agent, "terminate", "--instance", id, "--instances-path", b.instances)
	if err != nil {
		return lb, lw.abandon(err)
	}
	if lb, err = lw.finish(lb); err != nil {
		return lb, err
	}
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
	lw := waitLogin(ctx, console, sh)
	fail := func(err error) (loginBoot, error) { return lb, lw.abandon(err) }
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
		lb.Download = lw.since()
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
	def := plainDomain(name, b.virtType, disk, backing, console, b.kernel, b.initrd, osCmdline, osMemoryKiB)
	if trace != "" {
		def.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
			{Value: "-trace"}, {Value: "enable=blk_co_preadv,file=" + trace},
			{Value: "-msg"}, {Value: "timestamp=on"}, // each line PID@SECONDS: (the storm replays the times)
		}}
	}
	dom, stop, err := startDomain(ctx, conn, def, name)
	if err != nil {
		return fail(err)
	}
	defer stop()
	lb.Running = lw.since()
	if lb, err = lw.finish(lb); err != nil {
		return lb, err
	}
	st, err := dom.BlockStats("vda")
	if err != nil {
		return lb, fmt.Errorf("block stats: %w", err)
	}
	lb.GuestBytes, lb.GuestReads = st.RdBytes, st.RdReq
	return lb, nil
}

// localOSImage makes the scenario's sparse local copy of the OS image (the plain-file boot's
// base, and what is imported) and the directory qemu writes a boot's read trace into; it
// returns the copy's path and that directory.
func (e *env) localOSImage(ctx context.Context, scenario string, img *osImage) (localRaw, traceDir string, err error) {
	localDir, err := e.dir(scenario, "local")
	if err != nil {
		return "", "", err
	}
	if traceDir, err = e.dir(scenario, "trace"); err != nil {
		return "", "", err
	}
	os.Chmod(traceDir, 0o777) // qemu (libvirt-qemu) writes the trace
	localRaw = filepath.Join(localDir, osRawName)
	if _, err := command(ctx, "cp", "--sparse=always", img.raw, localRaw); err != nil {
		return "", "", err
	}
	os.Chmod(localRaw, 0o644)
	return localRaw, traceDir, nil
}
