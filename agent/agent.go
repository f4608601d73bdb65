package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/basefs/basefs/agent/nova"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/daemon/control"
)

// Defaults, as nova's where nova has one (nova: /var/lib/nova/instances and its _base).
const (
	DefaultInstancesPath = "/var/lib/basefs/instances"
	DefaultBase          = DefaultInstancesPath + "/_base"
	// DefaultKernelDir is where basefs-agent takes direct-boot kernels and initrds from.
	DefaultKernelDir = "/var/lib/basefs/kernels"
	DefaultConnect   = "qemu:///system"
	DefaultVirtType  = "kvm"
	DefaultCacheMode = "none"
	DefaultVCPUs     = 1
	DefaultMemory    = 256 * MiB
	// DefaultCmdline is the kernel command line of a direct kernel boot without --cmdline.
	DefaultCmdline = "root=/dev/vda console=ttyS0"
)

// The instance directory's files (nova's layout).
const (
	DiskFile    = nova.DiskFile
	XMLFile     = "libvirt.xml"
	ConsoleFile = "console.log"
)

// VirtTypes are the accepted domain types (nova's [libvirt] virt_type for x86 hosts).
var VirtTypes = []string{"kvm", "qemu"}

// CacheModes are the accepted disk cache modes (libvirt's <driver cache=…>).
var CacheModes = []string{"none", "writethrough", "writeback", "directsync", "unsafe", "default"}

// Config is an agent's environment. The zero value means the defaults.
type Config struct {
	InstancesPath string // the instance directories; "" → DefaultInstancesPath
	Connect       string // the libvirt URI; "" → DefaultConnect
	QemuImg       string // the qemu-img program; "" → "qemu-img" on PATH
	// KernelDirs are the directories a direct-boot kernel and initrd may come from (libvirt
	// relabels them and qemu loads them into a guest: no other host file may be). A path is
	// resolved (symbolic links too) and must then lie inside one of them; none: refused.
	KernelDirs []string
	Logger     *slog.Logger // nil: log nothing
	// StartTimeout bounds the wait for a started domain to be reported running; 0 → 60 s.
	StartTimeout time.Duration
}

// Agent runs the instance lifecycle on one host. Its methods are safe for concurrent use;
// each operation opens and closes its own libvirt connection.
type Agent struct {
	cfg Config
	log *slog.Logger
}

// New returns an agent.
func New(cfg Config) *Agent {
	if cfg.InstancesPath == "" {
		cfg.InstancesPath = DefaultInstancesPath
	}
	if abs, err := filepath.Abs(cfg.InstancesPath); err == nil {
		cfg.InstancesPath = abs // libvirt wants absolute paths
	}
	if cfg.Connect == "" {
		cfg.Connect = DefaultConnect
	}
	if cfg.QemuImg == "" {
		cfg.QemuImg = "qemu-img"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: log}
}

// InstancesPath returns the directory holding the instance directories.
func (a *Agent) InstancesPath() string { return a.cfg.InstancesPath }

// Dir returns instance id's directory.
func (a *Agent) Dir(id string) string { return filepath.Join(a.cfg.InstancesPath, id) }

// SpawnRequest describes an instance to boot. Zero values mean the defaults.
type SpawnRequest struct {
	ID        string
	Image     string // an image digest or glance://<id> (ParseImageRef)
	DiskSize  int64  // bytes; a multiple of 512, at least the image's size
	VCPUs     int
	Memory    int64  // bytes; a multiple of 1 KiB
	VirtType  string // kvm or qemu
	Kernel    string // direct kernel boot when set; else BIOS boot from the disk
	Initrd    string
	Cmdline   string
	CacheMode string
	Base      string // the basefs mount point; "" → DefaultBase
}

// Instance is an instance as list and show report it.
type Instance struct {
	ID        string            `json:"id"`
	Domain    string            `json:"domain,omitempty"` // the libvirt domain; empty if there is none
	State     string            `json:"state"`            // libvirt's state (running, shutoff, …) or "no-domain"
	Image     chunkstore.Digest `json:"image"`
	ImageSize int64             `json:"image_size"`
	View      string            `json:"view"`
	Backing   string            `json:"backing"` // the view's path in the mount
	Dir       string            `json:"dir"`
	Disk      string            `json:"disk"`      // the qcow2 overlay
	DiskSize  int64             `json:"disk_size"` // its virtual size, bytes
	Allocated int64             `json:"allocated"` // its allocated size on the host, bytes
	Console   string            `json:"console"`
	VirtType  string            `json:"virt_type,omitempty"`
	VCPUs     uint              `json:"vcpus,omitempty"`
	Memory    int64             `json:"memory,omitempty"` // bytes
	Created   string            `json:"created,omitempty"`
}

// Timings are how long each step of a spawn took, in seconds.
type Timings struct {
	Resolve float64 `json:"resolve"` // the daemon ensures the image; the view is looked up
	Overlay float64 `json:"overlay"` // qemu-img create
	Define  float64 `json:"define"`
	Start   float64 `json:"start"` // until libvirt reports the domain running
	Total   float64 `json:"total"`
}

// SpawnResult is a spawned instance and the time its steps took.
type SpawnResult struct {
	Instance
	Seconds Timings `json:"seconds"`
}

// spawnPlan is a checked, normalised request.
type spawnPlan struct {
	SpawnRequest
	digest   chunkstore.Digest
	glanceID string
}

// check validates everything that needs nothing outside the host's files: no change is made
// and no daemon asked.
func (a *Agent) check(req SpawnRequest) (*spawnPlan, error) {
	p := &spawnPlan{SpawnRequest: req}
	if err := ValidateID(req.ID); err != nil {
		return nil, kindf(ErrInvalid, "%w", err)
	}
	ref, err := ParseImageRef(req.Image)
	if err != nil {
		return nil, kindf(ErrInvalid, "%w", err)
	}
	p.digest, p.glanceID = ref.Digest, ref.GlanceID
	if req.DiskSize <= 0 || req.DiskSize%512 != 0 {
		return nil, kindf(ErrInvalid, "disk size %d bytes: must be a positive multiple of 512 bytes", req.DiskSize)
	}
	if p.VCPUs == 0 {
		p.VCPUs = DefaultVCPUs
	}
	if p.VCPUs < 1 || p.VCPUs > 4096 {
		return nil, kindf(ErrInvalid, "vcpus %d: must be from 1 to 4096", req.VCPUs)
	}
	if p.Memory == 0 {
		p.Memory = DefaultMemory
	}
	if p.Memory < MiB || p.Memory%KiB != 0 || p.Memory/KiB > int64(^uint32(0)) {
		return nil, kindf(ErrInvalid, "memory %d bytes: must be a multiple of 1 KiB, at least 1 MiB and at most 4 TiB", req.Memory)
	}
	if p.VirtType == "" {
		p.VirtType = DefaultVirtType
	}
	if !slices.Contains(VirtTypes, p.VirtType) {
		return nil, kindf(ErrInvalid, "virt type %q: want one of %s", p.VirtType, strings.Join(VirtTypes, ", "))
	}
	if p.CacheMode == "" {
		p.CacheMode = DefaultCacheMode
	}
	if !slices.Contains(CacheModes, p.CacheMode) {
		return nil, kindf(ErrInvalid, "cache mode %q: want one of %s", p.CacheMode, strings.Join(CacheModes, ", "))
	}
	if p.Kernel == "" && (p.Initrd != "" || p.Cmdline != "") {
		return nil, kindf(ErrInvalid, "an initrd or a kernel command line needs a kernel (direct kernel boot)")
	}
	for _, f := range []struct {
		what string
		path *string
	}{{"kernel", &p.Kernel}, {"initrd", &p.Initrd}} {
		if *f.path == "" {
			continue
		}
		abs, err := filepath.Abs(*f.path)
		if err != nil {
			return nil, kindf(ErrInvalid, "%s %s: %w", f.what, *f.path, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, kindf(ErrInvalid, "%s %s: no such file", f.what, abs)
			}
			return nil, kindf(ErrInvalid, "%s: %w", f.what, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, kindf(ErrInvalid, "%s %s: not a regular file", f.what, abs)
		}
		real, err := a.inKernelDir(abs)
		if err != nil {
			return nil, kindf(ErrInvalid, "%s %s: %w", f.what, abs, err)
		}
		*f.path = real
	}
	if p.Kernel != "" && p.Cmdline == "" {
		p.Cmdline = DefaultCmdline
	}
	if p.Base == "" {
		p.Base = DefaultBase
	}
	if p.Base, err = filepath.Abs(p.Base); err != nil {
		return nil, kindf(ErrInvalid, "base %s: %w", req.Base, err)
	}
	return p, nil
}

// inKernelDir returns path with every symbolic link resolved if that lies inside one of
// the kernel directories (themselves resolved), and an error saying which are allowed if not.
func (a *Agent) inKernelDir(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	for _, d := range a.cfg.KernelDirs {
		rd, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(rd, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && rel != "." {
			return real, nil
		}
	}
	if len(a.cfg.KernelDirs) == 0 {
		return "", errors.New("no kernel directory is configured: direct kernel boot is off (basefs-agent --kernel-dir DIR)")
	}
	return "", fmt.Errorf("is %s, outside the kernel directories %s (--kernel-dir): only their files may be booted", real, strings.Join(a.cfg.KernelDirs, ", "))
}

// ensure makes the daemon know the plan's image and returns its status and, for a Glance
// image, the name the mount knows it by (nova's: the SHA-1 of the image id). p.digest is set
// to the image's digest when the daemon knows it (a raw Glance image read lazily has none yet).
func (a *Agent) ensure(ctx context.Context, sock string, p *spawnPlan) (*control.ImageStatus, string, error) {
	cl := control.NewClient(sock)
	if p.glanceID == "" {
		st, err := cl.EnsureImage(ctx, p.digest)
		if err != nil {
			if chunkstore.IsNotFound(err) {
				return nil, "", fmt.Errorf("image %s is unknown to the basefs daemon of %s and to its origins (import or publish it first): %w", p.digest, p.Base, chunkstore.ErrNotFound)
			}
			return nil, "", fmt.Errorf("image %s: %w", p.digest, err)
		}
		return st, "", nil
	}
	gs, err := cl.EnsureGlance(ctx, p.glanceID)
	if err != nil {
		if chunkstore.IsNotFound(err) {
			return nil, "", fmt.Errorf("image %s: %w", p.Image, err)
		}
		return nil, "", fmt.Errorf("image %s: %w", p.Image, err)
	}
	if gs.Digest != nil {
		p.digest = *gs.Digest
	}
	return &control.ImageStatus{Digest: p.digest, Size: gs.Size}, gs.Name, nil
}

// Spawn boots an instance: it makes sure the daemon serving the base knows the image, picks
// the view, creates <ID>/disk (a qcow2 overlay on the view), writes <ID>/libvirt.xml, defines
// and starts the domain, and returns once libvirt reports it running. Everything that can be
// checked is checked before the first change (the instance directory's creation); any failure
// after it rolls back: no domain stays defined, no directory stays.
func (a *Agent) Spawn(ctx context.Context, req SpawnRequest) (_ *SpawnResult, err error) {
	t0 := time.Now()
	p, err := a.check(req)
	if err != nil {
		return nil, err
	}
	log := a.log.With("instance", p.ID)

	// The image, through the daemon that serves the base.
	sock, err := control.SocketFromMount(p.Base)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	st, ref, err := a.ensure(ctx, sock, p)
	if err != nil {
		return nil, err
	}
	view, err := PickView(p.digest, st.Size, p.DiskSize)
	if err != nil {
		return nil, kindf(ErrInvalid, "image %s: %w", p.Image, err)
	}
	view.Ref = ref
	backing := filepath.Join(p.Base, view.String())
	fi, err := os.Stat(backing)
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", backing, err)
	}
	if fi.Size() != view.Size(st.Size) {
		return nil, fmt.Errorf("view %s: the mount says %d bytes, want %d", backing, fi.Size(), view.Size(st.Size))
	}
	tResolved := time.Now()
	log.Info("image ready", "image", p.Image, "digest", p.digest.String(), "size", st.Size, "view", view.String())

	conn, err := a.connect()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	name := DomainName(p.ID)
	if dom, err := conn.LookupDomainByName(name); err == nil {
		dom.Free()
		return nil, kindf(ErrExists, "instance %s exists: domain %s is defined (terminate it first, or pick another ID)", p.ID, name)
	} else if !isVirt(err, libvirt.ERR_NO_DOMAIN) {
		return nil, fmt.Errorf("libvirt: look up domain %s: %w", name, virt(err))
	}

	// The first change: the instance directory. Its exclusive creation is also the lock that
	// makes a second spawn of the same ID fail without touching the first.
	if err := os.MkdirAll(a.cfg.InstancesPath, 0o755); err != nil {
		return nil, fmt.Errorf("instances path: %w", err)
	}
	dir := a.Dir(p.ID)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, kindf(ErrExists, "instance %s exists: its directory %s is there (terminate it first, or pick another ID)", p.ID, dir)
		}
		return nil, fmt.Errorf("instance directory: %w", err)
	}
	var dom *libvirt.Domain
	var started bool
	defer func() {
		if err == nil {
			return
		}
		if rb := a.rollback(dom, started, dir); rb != nil {
			err = fmt.Errorf("%w; rollback incomplete: %v", err, rb)
		} else {
			err = fmt.Errorf("%w (rolled back: no domain, no instance directory left)", err)
		}
		if dom != nil {
			dom.Free()
		}
	}()

	disk := filepath.Join(dir, DiskFile)
	if err := a.createOverlay(ctx, disk, backing, p.DiskSize); err != nil {
		return nil, err
	}
	tOverlay := time.Now()

	meta := Metadata{
		ID: p.ID, Image: p.digest.String(), ImageSize: st.Size, View: view.String(),
		Base: p.Base, Dir: dir, DiskSize: p.DiskSize, Created: t0.UTC().Format(time.RFC3339),
	}
	spec := domainSpec{Meta: meta, Guest: Guest{
		VirtType: p.VirtType, VCPUs: uint(p.VCPUs), MemoryKiB: uint(p.Memory / KiB),
		Disk: disk, Backing: backing, CacheMode: p.CacheMode, Console: filepath.Join(dir, ConsoleFile),
		Kernel: p.Kernel, Initrd: p.Initrd, Cmdline: p.Cmdline,
	}}
	def, err := buildDomain(spec)
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	doc, err := def.Marshal()
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, XMLFile), []byte(doc+"\n"), 0o644); err != nil {
		return nil, err
	}
	dom, err = conn.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
	if err != nil {
		dom = nil
		if isVirt(err, libvirt.ERR_DOM_EXIST) || isVirt(err, libvirt.ERR_OPERATION_FAILED) && strings.Contains(err.Error(), "already exists") {
			return nil, kindf(ErrExists, "instance %s exists: libvirt: %w", p.ID, virt(err))
		}
		return nil, fmt.Errorf("libvirt: define %s: %w", name, virt(err))
	}
	tDefined := time.Now()
	log.Info("domain defined", "domain", name)

	if err := dom.Create(); err != nil {
		return nil, fmt.Errorf("libvirt: start %s: %w", name, virt(err))
	}
	started = true
	state, err := a.waitRunning(ctx, dom)
	if err != nil {
		return nil, fmt.Errorf("libvirt: start %s: %w", name, err)
	}
	tStarted := time.Now()
	log.Info("domain running", "domain", name, "seconds", tStarted.Sub(t0).Seconds())

	inst := Instance{
		ID: p.ID, Domain: name, State: state, Image: p.digest, ImageSize: st.Size,
		View: view.String(), Backing: backing, Dir: dir, Disk: disk, DiskSize: p.DiskSize,
		Allocated: allocated(disk), Console: spec.Console, VirtType: p.VirtType,
		VCPUs: uint(p.VCPUs), Memory: p.Memory, Created: meta.Created,
	}
	dom.Free()
	dom = nil
	return &SpawnResult{Instance: inst, Seconds: Timings{
		Resolve: tResolved.Sub(t0).Seconds(),
		Overlay: tOverlay.Sub(tResolved).Seconds(),
		Define:  tDefined.Sub(tOverlay).Seconds(),
		Start:   tStarted.Sub(tDefined).Seconds(),
		Total:   tStarted.Sub(t0).Seconds(),
	}}, nil
}
