package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/basefs/basefs/chunkstore/httpx"
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

// rbImage is the OS image imported at one chunk size, and the boot profile a previous host
// recorded for it.
type rbImage struct {
	cs         int64 // chunk size
	imp        *importResult
	profile    []byte // encoded
	profChunks int
	recLogin   float64 // the recording boot's time to login:
}

// way names a basefs way at this image's chunk size.
func (im *rbImage) way(v string) string { return v + ", " + sizeText(im.cs) + " chunks" }

// recordProfile boots the image once on a fresh basefs state (a previous host) with boot
// profile recording on, and returns the profile that host recorded (its encoded bytes), its
// chunk count, and that boot's time to login.
func (e *env) recordProfile(ctx context.Context, b realBoot, sh *Shaper, originURL, digest string, window time.Duration) ([]byte, int, float64, error) {
	state := filepath.Join(e.work, "real-boot", "basefs", "state-recorder-"+digest[:12])
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
		if err := httpx.Sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, 0, 0, err
		}
	}
}

// rbStep is one boot of a run: a way and, for the basefs ways, the image (chunk size) it boots.
type rbStep struct {
	way string
	im  *rbImage
}

// realBootOrder is run's sequence of boots: the ways alternate order run by run; a warm boot
// follows the lazy boot whose daemon it reuses.
func realBootOrder(run int, ims []*rbImage) []rbStep {
	steps := []rbStep{{way: rbLocal}}
	for _, im := range ims {
		steps = append(steps, rbStep{rbLazy, im}, rbStep{rbWarm, im}, rbStep{rbProfile, im})
	}
	steps = append(steps, rbStep{way: rbEager})
	if run%2 == 0 {
		return steps
	}
	rev := []rbStep{{way: rbEager}}
	for i := len(ims) - 1; i >= 0; i-- {
		rev = append(rev, rbStep{rbProfile, ims[i]}, rbStep{rbLazy, ims[i]}, rbStep{rbWarm, ims[i]})
	}
	return append(rev, rbStep{way: rbLocal})
}

// runRealBoot: the real OS image to its login prompt — basefs cold lazy, cold with a boot
// profile from a previous host, warm, at each chunk size; nova's eager path; a local raw
// file — over each link.
func runRealBoot(ctx context.Context, e *env, r *Result) error {
	agentBin, err := needBoots(ctx, e.opts)
	if err != nil {
		return err
	}
	o := e.opts
	img, err := e.osImage(ctx)
	if err != nil {
		return err
	}
	var cl cleanups
	defer cl.run()
	dirs, err := e.bootDirs("real-boot")
	if err != nil {
		return err
	}
	www, rawDir, pub, originState := dirs.www, dirs.raw, dirs.pub, dirs.originState
	instances, mount, novaInst, novaBase := dirs.instances, dirs.mount, dirs.novaInst, dirs.novaBase

	// The local raw file (sparse copy), the qcow2 form on the origin, the published layout
	// (the image at every chunk size: content-addressed, they share one layout).
	localRaw, traceDir, err := e.localOSImage(ctx, "real-boot", img)
	if err != nil {
		return err
	}
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
	var ims []*rbImage
	for _, cs := range o.RealChunkSizes {
		e.logf("importing and publishing the OS image (%s, %s allocated) at %s chunks", sizeText(size), mibText(alloc), sizeText(cs))
		imp, err := e.importPublished(ctx, originState, pub, localRaw, "--chunk-size", fmt.Sprint(cs))
		if err != nil {
			return err
		}
		ims = append(ims, &rbImage{cs: cs, imp: imp})
	}
	realBootSettings(r, o, img, size, alloc, qfi.Size(), ims)

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
	tr, err := newTraceModel(trace, localRaw, size, o.RealChunkSizes)
	if err != nil {
		return err
	}
	e.logf("traced boot: login %.1f s, %d reads, %s read, %s distinct", tb.Login, len(tr.xs), mibText(tr.sum), mibText(tr.uniq))

	got := series{}
	for li, link := range o.RealLinks {
		org, err := startOrigin(www, link.Bandwidth, link.Latency)
		if err != nil {
			return err
		}
		cl.add(org.Close)
		if li == 0 {
			for _, im := range ims {
				e.logf("recording the boot profile on a previous host (%s chunks, window %s, link %s)", sizeText(im.cs), o.ProfileWindow, link)
				im.profile, im.profChunks, im.recLogin, err = e.recordProfile(ctx, b, org.Shaper, org.URL+"/pub/", im.imp.Digest, o.ProfileWindow)
				if err != nil {
					return fmt.Errorf("recording the boot profile (%s chunks): %w", sizeText(im.cs), err)
				}
				e.logf("boot profile: %d chunks (that boot reached login: in %.1f s)", im.profChunks, im.recLogin)
			}
		}
		for run := range o.Runs {
			var d *daemon
			for _, st := range realBootOrder(run, ims) {
				id := nextID()
				v, name := st.way, st.way
				if st.im != nil {
					name = st.im.way(v)
				}
				var lb loginBoot
				var err error
				switch v {
				case rbLazy, rbProfile:
					state := filepath.Join(e.work, "real-boot", "basefs", "state-"+id)
					if v == rbProfile {
						p := filepath.Join(state, "profiles", st.im.imp.Digest)
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							return err
						}
						if err := os.WriteFile(p, st.im.profile, 0o644); err != nil {
							return err
						}
					}
					d, err = e.startDaemon(ctx, state, mount, []string{org.URL + "/pub/"}, "--instances-path", instances)
					if err != nil {
						return err
					}
					lb, err = b.agentBoot(ctx, d, org.Shaper, id, st.im.imp.Digest)
					if v == rbProfile && err == nil {
						d.Stop()
						os.RemoveAll(d.State)
						d = nil
					}
				case rbWarm:
					lb, err = b.agentBoot(ctx, d, org.Shaper, id, st.im.imp.Digest)
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
					return fmt.Errorf("%s, %s, run %d: %w", link, name, run+1, err)
				}
				e.logf("%s run %d/%d %-40s %s", link, run+1, o.Runs, name, got.addBoot(name, li, v, lb))
			}
		}
		org.Close()
	}
	realBootReport(r, o, got, ims, tr, qfi.Size())
	return nil
}

// addBoot records one boot's measurements under way name on link li and describes them.
func (s series) addBoot(name string, li int, v string, lb loginBoot) string {
	k := func(m string) string { return key(name, li, m) }
	s.add(k("login"), lb.Login)
	s.add(k("running"), lb.Running)
	s.add(k("origin"), float64(lb.OriginBytes)/float64(MiB))
	s.add(k("requests"), float64(lb.OriginRequests))
	s.add(k("guest"), float64(lb.GuestBytes)/float64(MiB))
	s.add(k("guestreqs"), float64(lb.GuestReads))
	if lb.GuestBytes > 0 {
		s.add(k("amp"), float64(lb.OriginBytes)/float64(lb.GuestBytes))
	}
	extra := ""
	switch v {
	case rbEager:
		s.add(k("download"), lb.Download)
		extra = fmt.Sprintf(", download+convert %.1f s", lb.Download)
	case rbLazy, rbProfile, rbWarm:
		s.add(k("mount"), float64(lb.MountBytes)/float64(MiB))
		s.add(k("chunks"), float64(lb.ChunkBytes)/float64(MiB))
		if lb.GuestBytes > 0 {
			s.add(k("chunkamp"), float64(lb.ChunkBytes)/float64(lb.GuestBytes))
		}
		extra = fmt.Sprintf(", chunks fetched %s uncompressed, read through the mount %s", mibText(lb.ChunkBytes), mibText(lb.MountBytes))
	}
	return fmt.Sprintf("login %5.1f s, origin %s in %d requests, guest read %s (%d reads)%s",
		lb.Login, mibText(lb.OriginBytes), lb.OriginRequests, mibText(lb.GuestBytes), lb.GuestReads, extra)
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
