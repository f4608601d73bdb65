package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	dirs, err := e.bootDirs("real-boot")
	if err != nil {
		return err
	}
	www, rawDir, pub, originState := dirs.www, dirs.raw, dirs.pub, dirs.originState
	instances, mount, novaInst, novaBase := dirs.instances, dirs.mount, dirs.novaInst, dirs.novaBase
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
