package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// libvirtURI is where domains are defined.
const libvirtURI = "qemu:///system"

// needLibvirt fails unless the host can boot guests: root, qemu, qemu-img, and a libvirtd
// answering.
func needLibvirt(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	if err := needTools("qemu-img", "qemu-system-x86_64", "virsh"); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "virsh", "-c", libvirtURI, "version").CombinedOutput(); err != nil {
		return fmt.Errorf("libvirtd does not answer on %s (scripts/setup-host.sh starts it): %v: %s", libvirtURI, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// repoRoot finds the basefs checkout: upwards from the working directory, else from the
// executable's directory (bin/..).
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/basefs/basefs\n") {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find the basefs checkout (for scripts/build-test-guest.sh); give --guest DIR")
}

// guest returns the test guest's kernel and initrd, copied into the work directory
// world-readable (qemu runs as libvirt-qemu). Without Options.GuestDir it is built (or found
// built) by scripts/build-test-guest.sh into <repo>/.cache/test-guest.
func (e *env) guest(ctx context.Context) (kernel, initrd string, err error) {
	src := e.opts.GuestDir
	if src == "" {
		root, err := repoRoot()
		if err != nil {
			return "", "", err
		}
		src = filepath.Join(root, ".cache", "test-guest")
		e.logf("test guest: scripts/build-test-guest.sh %s", src)
		if _, err := command(ctx, filepath.Join(root, "scripts", "build-test-guest.sh"), src); err != nil {
			return "", "", fmt.Errorf("building the test guest: %w", err)
		}
	}
	dst, err := e.dir("guest")
	if err != nil {
		return "", "", err
	}
	kernel, initrd = filepath.Join(dst, "vmlinuz"), filepath.Join(dst, "initrd.gz")
	if err := copyFile(filepath.Join(src, "vmlinuz"), kernel); err != nil {
		return "", "", fmt.Errorf("test guest: %w", err)
	}
	if err := copyFile(filepath.Join(src, "initrd.gz"), initrd); err != nil {
		return "", "", fmt.Errorf("test guest: %w", err)
	}
	return kernel, initrd, nil
}

// guestCmdline is the test guest's kernel command line: read and hash n bytes of /dev/vda.
func guestCmdline(n int64) string {
	return fmt.Sprintf("console=ttyS0 quiet panic=-1 basefs.readsize=%d", n)
}

// bootTimes is one boot's timeline, in seconds from the start of the spawn (or of the
// download, for nova's eager path).
type bootTimes struct {
	Running     float64 // libvirt reports the domain running (provisioning done)
	First       float64 // the guest's first console line, "BASEFS-GUEST boot"
	SHA         float64 // "BASEFS-GUEST sha256=…": the guest has read and hashed its N bytes
	OriginBytes int64   // bytes through the shaped origin link from the start to the sha line
	Download    float64 // eager: the download alone
}

// consoleWatch polls a guest's console log for the test guest's lines.
type consoleWatch struct {
	first, sha  time.Time
	shaLine     string
	originBytes int64
	err         error
}

// watchConsole waits for the sha256 line in the console log at path (which may not exist
// yet), noting when the first line and the sha line appeared and originBytes() at the sha
// line.
func watchConsole(ctx context.Context, path string, originBytes func() int64, timeout time.Duration) consoleWatch {
	var w consoleWatch
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		text := strings.ReplaceAll(string(b), "\r", "")
		if w.first.IsZero() && strings.Contains(text, "BASEFS-GUEST boot") {
			w.first = time.Now()
		}
		if i := strings.Index(text, "BASEFS-GUEST sha256="); i >= 0 {
			if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
				w.sha = time.Now()
				w.originBytes = originBytes()
				w.shaLine = text[i : i+j]
				if w.first.IsZero() {
					w.first = w.sha
				}
				return w
			}
		}
		if i := strings.Index(text, "BASEFS-GUEST error"); i >= 0 {
			w.err = fmt.Errorf("guest: %s", oneLine(text[i:]))
			return w
		}
		if time.Now().After(deadline) {
			w.err = fmt.Errorf("no sha256 line on the guest's console within %s; console: %q", timeout, tail(text, 600))
			return w
		}
		select {
		case <-ctx.Done():
			w.err = ctx.Err()
			return w
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// background is a watcher goroutine with a context of its own.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// inBackground runs watch in a goroutine until it returns or is abandoned.
func inBackground(ctx context.Context, watch func(ctx context.Context)) background {
	wctx, cancel := context.WithCancel(ctx)
	b := background{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		watch(wctx)
	}()
	return b
}

// abandon cancels the watcher, waits until it has returned and returns err.
func (b background) abandon(err error) error {
	b.cancel()
	<-b.done
	return err
}

// wait waits until the watcher returns by itself.
func (b background) wait() {
	<-b.done
	b.cancel()
}

// bootWatch is one boot of the test guest from its start: the console watched in the
// background for the guest's lines (watchConsole), the origin link's bytes counted from t0.
type bootWatch struct {
	background
	t0 time.Time
	b0 int64
	w  consoleWatch
}

// watchBoot starts a boot's clock and watches the console log at path.
func watchBoot(ctx context.Context, path string, sh *Shaper) *bootWatch {
	bw := &bootWatch{b0: sh.Bytes(), t0: time.Now()}
	bw.background = inBackground(ctx, func(ctx context.Context) { bw.w = watchConsole(ctx, path, sh.Bytes, bootTimeout) })
	return bw
}

// since returns the seconds since the boot started.
func (bw *bootWatch) since() float64 { return time.Since(bw.t0).Seconds() }

// finish waits for the sha line, notes in bt when the first line and the sha line appeared
// and the origin bytes until then, and checks the guest read wantSHA over its n bytes.
func (bw *bootWatch) finish(bt bootTimes, wantSHA string, n int64) (bootTimes, error) {
	bw.wait()
	if bw.w.err != nil {
		return bt, bw.w.err
	}
	bt.First, bt.SHA = bw.w.first.Sub(bw.t0).Seconds(), bw.w.sha.Sub(bw.t0).Seconds()
	bt.OriginBytes = bw.w.originBytes - bw.b0
	return bt, checkSHA(bw.w.shaLine, wantSHA, n)
}

// guestMemoryKiB is the test guest's memory.
const guestMemoryKiB = 256 * 1024

// bootTimeout bounds a boot from spawn to the sha line.
const bootTimeout = 5 * time.Minute

// checkSHA checks the guest's sha line against the expected hash of the first n bytes.
func checkSHA(line, want string, n int64) error {
	if line != fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", want, n) {
		return fmt.Errorf("the guest read wrong bytes: %q, want sha256=%s bytes=%d", line, want, n)
	}
	return nil
}

// agentBoot boots the test guest on image digest through `basefs-agent spawn` against the
// daemon's mount, waits for its sha line and terminates it.
type agentBoot struct {
	agent, instances, base string
	kernel, initrd         string
	virtType               string
	org                    *origin
}

func (a agentBoot) boot(ctx context.Context, id, digest string, diskSize, readN int64, wantSHA string) (bootTimes, error) {
	var bt bootTimes
	bw := watchBoot(ctx, filepath.Join(a.instances, id, "console.log"), a.org.Shaper)
	out, err := command(ctx, a.agent, "spawn", "--instance", id, "--image", digest, "--disk-size", fmt.Sprint(diskSize),
		"--virt-type", a.virtType, "--kernel", a.kernel, "--initrd", a.initrd, "--kernel-dir", filepath.Dir(a.kernel), "--kernel-dir", filepath.Dir(a.initrd), "--cmdline", guestCmdline(readN),
		"--instances-path", a.instances, "--base", a.base, "--json")
	bt.Running = bw.since()
	defer command(context.Background(), a.agent, "terminate", "--instance", id, "--instances-path", a.instances)
	if err != nil {
		return bt, bw.abandon(err)
	}
	var res struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return bt, bw.abandon(fmt.Errorf("basefs-agent spawn --json: %w: %q", err, tail(string(out), 300)))
	}
	return bw.finish(bt, wantSHA, readN)
}

// plainBoot boots the test guest as nova does on a plain _base: optionally download the
// raw image from the origin into _base first (nova's eager path; a raw image needs no
// qemu-img convert), then a qcow2 overlay on the base file, a domain defined and started
// through libvirt with the same devices as the agent's, wait for the sha line, destroy.
type plainBoot struct {
	instances, base string // nova's instances directory and its plain _base
	kernel, initrd  string
	virtType        string
	org             *origin
}

func (p plainBoot) boot(ctx context.Context, name, backing, rawURL string, diskSize, readN int64, wantSHA string) (bootTimes, error) {
	var bt bootTimes
	dir := filepath.Join(p.instances, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return bt, err
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	bw := watchBoot(ctx, console, p.org.Shaper)
	fail := func(err error) (bootTimes, error) { return bt, bw.abandon(err) }
	if rawURL != "" {
		part := backing + ".part"
		if _, err := download(ctx, rawURL, part); err != nil {
			os.Remove(part)
			return fail(fmt.Errorf("download: %w", err))
		}
		if err := os.Rename(part, backing); err != nil {
			return fail(err)
		}
		bt.Download = bw.since()
	}
	disk := filepath.Join(dir, "disk")
	if _, err := command(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", disk, fmt.Sprint(diskSize)); err != nil {
		return fail(err)
	}
	conn, err := libvirt.NewConnect(libvirtURI)
	if err != nil {
		return fail(fmt.Errorf("libvirt: %w", err))
	}
	defer conn.Close()
	_, stop, err := startDomain(ctx, conn, plainDomain(name, p.virtType, disk, backing, console, p.kernel, p.initrd, guestCmdline(readN), guestMemoryKiB), name)
	if err != nil {
		return fail(err)
	}
	defer stop()
	bt.Running = bw.since()
	return bw.finish(bt, wantSHA, readN)
}

// waitRunning waits, as the agent does, until libvirt reports a started domain running (a
// guest that already powered off by itself counts).
func waitRunning(ctx context.Context, dom *libvirt.Domain) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, reason, err := dom.GetState()
		if err != nil {
			return err
		}
		switch s {
		case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
			return nil
		case libvirt.DOMAIN_SHUTOFF:
			if libvirt.DomainShutoffReason(reason) == libvirt.DOMAIN_SHUTOFF_SHUTDOWN {
				return nil
			}
			return fmt.Errorf("the domain stopped right after it started (shutoff reason %d)", reason)
		case libvirt.DOMAIN_CRASHED:
			return errors.New("the domain crashed right after it started")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not running after 60 s (state %d)", s)
		}
		if err := httpx.Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// plainDomain is the domain nova's path boots: the agent's machine (agent.GuestDomain) — a
// virtio qcow2 overlay (cache=none) on a raw backing file with DAC relabelling off and the
// chain ended, a serial console to a file — booting kernel and initrd directly, with one vCPU
// and memKiB of memory.
func plainDomain(name, virtType, disk, backing, console, kernel, initrd, cmdline string, memKiB uint) *libvirtxml.Domain {
	return agent.GuestDomain(name, agent.Guest{
		VirtType: virtType, VCPUs: 1, MemoryKiB: memKiB,
		Disk: disk, Backing: backing, CacheMode: "none", Console: console,
		Kernel: kernel, Initrd: initrd, Cmdline: cmdline,
	})
}

// startDomain defines and starts domain def (named name) and waits until libvirt reports it
// running; stop destroys, undefines and frees it.
func startDomain(ctx context.Context, conn *libvirt.Connect, def *libvirtxml.Domain, name string) (dom *libvirt.Domain, stop func(), err error) {
	doc, err := def.Marshal()
	if err != nil {
		return nil, nil, err
	}
	dom, err = conn.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
	if err != nil {
		return nil, nil, fmt.Errorf("libvirt: define %s: %w", name, err)
	}
	stop = func() {
		dom.Destroy()
		dom.Undefine()
		dom.Free()
	}
	if err := dom.Create(); err != nil {
		stop()
		return nil, nil, fmt.Errorf("libvirt: start %s: %w", name, err)
	}
	if err := waitRunning(ctx, dom); err != nil {
		stop()
		return nil, nil, fmt.Errorf("libvirt: start %s: %w", name, err)
	}
	return dom, stop, nil
}

// bootDirs is a boot scenario's work layout: a web root with raw images and a published
// layout, the origin's state, basefs's and nova's instance directories with their _base.
type bootDirs struct {
	www, raw, pub, originState           string
	instances, mount, novaInst, novaBase string
}

func (e *env) bootDirs(scenario string) (bootDirs, error) {
	var d bootDirs
	for _, x := range []struct {
		p    *string
		elem []string
	}{
		{&d.www, []string{"www"}}, {&d.raw, []string{"www", "raw"}}, {&d.pub, []string{"www", "pub"}},
		{&d.originState, []string{"origin-state"}}, {&d.instances, []string{"basefs", "instances"}},
		{&d.mount, []string{"basefs", "instances", "_base"}}, {&d.novaInst, []string{"nova", "instances"}},
		{&d.novaBase, []string{"nova", "instances", "_base"}},
	} {
		p, err := e.dir(append([]string{scenario}, x.elem...)...)
		if err != nil {
			return d, err
		}
		*x.p = p
	}
	return d, nil
}

// needBoots checks what a scenario that boots guests needs (FUSE, libvirt) and returns the
// basefs-agent binary.
func needBoots(ctx context.Context, o Options) (string, error) {
	if err := needFUSE(); err != nil {
		return "", err
	}
	if err := needLibvirt(ctx); err != nil {
		return "", err
	}
	return findBinary(o.BinDir, "basefs-agent")
}
