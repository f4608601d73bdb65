package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// coldBootExtents lays out a cold-boot image of size bytes: data in the first 2×guestRead
// bytes (the guest reads the first half), then a 4 MiB data extent every 256 MiB; holes
// elsewhere.
func coldBootExtents(size, guestRead int64) []extent {
	head := min(size, 2*guestRead)
	xs := []extent{{0, head}}
	for off := 256 * MiB; off+4*MiB <= size; off += 256 * MiB {
		if off >= head {
			xs = append(xs, extent{off, 4 * MiB})
		}
	}
	return xs
}

// Cold-boot variants.
const (
	vLazy  = "basefs lazy (cold state)"
	vWarm  = "basefs warm (local state)"
	vEager = "nova eager (download, then boot)"
	vLocal = "local base (plain file)"
)

// runColdBoot: boots of the test guest on a cold basefs state vs nova's eager download vs a
// local base, at each image size.
func runColdBoot(ctx context.Context, e *env, r *Result) error {
	agentBin, err := needBoots(ctx, e.opts)
	if err != nil {
		return err
	}
	o := e.opts
	r.Measures = fmt.Sprintf("The test guest (Debian cloud kernel + busybox initramfs, %s, TCG here) boots on a "+
		"qcow2 overlay over the image and prints `BASEFS-GUEST boot` first, then "+
		"`BASEFS-GUEST sha256=… bytes=%d` once it has read and hashed the first %s of its disk. "+
		"Times run from the start of the spawn: to libvirt reporting the domain running (provisioning), to the "+
		"first console line, to the sha256 line (checked against the image's bytes). Four ways, alternating "+
		"order run by run: **%s** — `basefs-agent spawn` on a `basefs mount` with an empty state whose origin "+
		"is the published layout (`basefs publish`) served over HTTP; **%s** — the same spawn again on the "+
		"same daemon after the lazy boot (its chunks now local); **%s** — nova's path: download the raw image "+
		"over HTTP from the same origin into a plain _base directory (raw: no qemu-img convert), "+
		"`qemu-img create` a qcow2 overlay, define and start the domain through libvirt with the agent's "+
		"devices; **%s** — that same boot from a base file already on local disk (the floor). Origin bytes "+
		"are counted at the shaping proxy from the start of the spawn to the sha256 line.",
		o.VirtType, o.GuestRead, sizeText(o.GuestRead), vLazy, vWarm, vEager, vLocal)
	r.set("image sizes", "%s", sizesText(o.BootSizes))
	r.set("image content", "pseudo-random data in the first %s (the guest reads the first %s), a 4 MiB data extent every 256 MiB after it, holes elsewhere; 1 MiB chunks", sizeText(2*o.GuestRead), sizeText(o.GuestRead))
	r.set("origin link", "%s, +%s before each response (a shaping reverse proxy in front of Go's http.FileServer on loopback)", bandwidthText(o.Bandwidth), o.Latency)
	r.set("guest", "1 vCPU, 256 MiB, virt type %s, disk cache=none, disk size = image size", o.VirtType)
	r.set("daemon", "`basefs mount` defaults with background fill and scrub off (only what the guest reads is fetched)")
	r.set("eager download", "the whole body over HTTP, written sparse (all-zero MiB blocks skipped: less disk I/O, no less time on the wire)")
	r.set("runs", "%d per size and way", o.Runs)

	kernel, initrd, err := e.guest(ctx)
	if err != nil {
		return err
	}
	var cl cleanups
	defer cl.run()
	dirs, err := e.bootDirs("cold-boot")
	if err != nil {
		return err
	}
	www, rawDir, pub, originState := dirs.www, dirs.raw, dirs.pub, dirs.originState
	instances, mount, novaInst, novaBase := dirs.instances, dirs.mount, dirs.novaInst, dirs.novaBase
	org, err := startOrigin(www, o.Bandwidth, o.Latency)
	if err != nil {
		return err
	}
	cl.add(org.Close)
	ab := agentBoot{agent: agentBin, instances: instances, base: mount, kernel: kernel, initrd: initrd, virtType: o.VirtType, org: org}
	pb := plainBoot{instances: novaInst, base: novaBase, kernel: kernel, initrd: initrd, virtType: o.VirtType, org: org}

	got := series{}
	seq := 0
	for _, size := range o.BootSizes {
		name := fmt.Sprintf("image-%s.raw", sizeLabel(size))
		raw := filepath.Join(rawDir, name)
		xs := coldBootExtents(size, o.GuestRead)
		e.logf("%s: writing the image (%s of data) and publishing it", sizeText(size), sizeText(dataBytes(xs)))
		if err := writeImage(raw, size, uint64(300+size/GiB), xs); err != nil {
			return err
		}
		want, err := prefixSHA256(raw, o.GuestRead)
		if err != nil {
			return err
		}
		imp, err := e.importPublished(ctx, originState, pub, raw)
		if err != nil {
			return err
		}
		for run := range o.Runs {
			order := []string{vLazy, vWarm, vEager, vLocal}
			if run%2 == 1 {
				order = []string{vEager, vLocal, vLazy, vWarm}
			}
			var d *daemon
			for _, v := range order {
				seq++
				id := fmt.Sprintf("bench%d-%d", os.Getpid(), seq)
				var bt bootTimes
				var err error
				switch v {
				case vLazy:
					state := filepath.Join(e.work, "cold-boot", "basefs", fmt.Sprintf("state-%d", seq))
					d, err = e.startDaemon(ctx, state, mount, []string{org.URL + "/pub/"}, "--instances-path", instances)
					if err != nil {
						return err
					}
					bt, err = ab.boot(ctx, id, imp.Digest, size, o.GuestRead, want)
				case vWarm:
					bt, err = ab.boot(ctx, id, imp.Digest, size, o.GuestRead, want)
					d.Stop()
					os.RemoveAll(d.State)
					d = nil
				case vEager:
					backing := filepath.Join(novaBase, name)
					bt, err = pb.boot(ctx, "basefsbench-"+id, backing, org.URL+"/raw/"+name, size, o.GuestRead, want)
					os.Remove(backing)
				case vLocal:
					bt, err = pb.boot(ctx, "basefsbench-"+id, raw, "", size, o.GuestRead, want)
				}
				if err != nil {
					if d != nil {
						d.Stop()
						err = fmt.Errorf("%w; daemon log: %s", err, tail(d.Log(), 800))
					}
					return fmt.Errorf("%s, %s, run %d: %w", sizeText(size), v, run+1, err)
				}
				k := func(m string) string { return key(v, size, m) }
				got.add(k("running"), bt.Running)
				got.add(k("first"), bt.First)
				got.add(k("sha"), bt.SHA)
				got.add(k("origin"), float64(bt.OriginBytes)/float64(MiB))
				got.add(k("amp"), float64(bt.OriginBytes)/float64(o.GuestRead))
				extra := ""
				if v == vEager {
					got.add(k("download"), bt.Download)
					extra = fmt.Sprintf(", download %.1f s", bt.Download)
				}
				e.logf("%s run %d/%d %-34s running %5.2f s, first line %5.2f s, sha %5.2f s, origin %7.1f MiB%s",
					sizeText(size), run+1, o.Runs, v, bt.Running, bt.First, bt.SHA, float64(bt.OriginBytes)/float64(MiB), extra)
			}
		}
		os.Remove(raw)
	}

	// Rows, highlights, figures.
	metrics := []struct{ key, name, unit string }{
		{"running", "spawn → running (provisioning)", "s"},
		{"first", "spawn → first console line", "s"},
		{"sha", fmt.Sprintf("spawn → sha256 line (guest read %s)", sizeText(o.GuestRead)), "s"},
		{"origin", "origin bytes (spawn → sha256 line)", "MiB"},
		{"amp", "origin bytes ÷ bytes the guest read", "×"},
	}
	for _, size := range o.BootSizes {
		s := func(v, m string) []float64 { return got[key(v, size, m)] }
		rows := map[string]Row{}
		for _, m := range metrics {
			rows[m.key] = r.add(m.name+", "+sizeText(size), m.unit, "lower", vLazy, s(vLazy, m.key), vEager, s(vEager, m.key))
		}
		local := map[string]Row{}
		for _, m := range metrics[:3] {
			local[m.key] = r.add(m.name+", "+sizeText(size), m.unit, "lower", vLazy, s(vLazy, m.key), vLocal, s(vLocal, m.key))
		}
		warm := r.add(metrics[2].name+", "+sizeText(size), "s", "lower", vWarm, s(vWarm, "sha"), vLocal, s(vLocal, "sha"))
		dl := Summarize(s(vEager, "download"))
		r.note("%s, nova eager: the download alone took %s s (median; %s–%s), %s MB/s of the link's %s MB/s.",
			sizeText(size), fmtNum(dl.Median), fmtNum(dl.Min), fmtNum(dl.Max), fmtNum(float64(size)/dl.Median/1e6), fmtNum(o.Bandwidth/8e6))
		r.highlight("%s image: provisioning (spawn → running) %s s lazy vs %s s eager (%s faster); first console line %s s vs %s s (%s faster); sha256 line %s s vs %s s (%s faster)",
			sizeText(size),
			fmtNum(rows["running"].Basefs.Median), fmtNum(rows["running"].Baseline.Median), speedup(rows["running"]),
			fmtNum(rows["first"].Basefs.Median), fmtNum(rows["first"].Baseline.Median), speedup(rows["first"]),
			fmtNum(rows["sha"].Basefs.Median), fmtNum(rows["sha"].Baseline.Median), speedup(rows["sha"]))
		r.highlight("%s image: lazy ÷ local base: %s to the first console line, %s to the sha256 line (warm basefs ÷ local base: %s); origin bytes %s MiB lazy = %s× the %s the guest read (eager: %s MiB, %s×)",
			sizeText(size), ratioOf(local["first"]), ratioOf(local["sha"]), ratioOf(warm),
			fmtNum(rows["origin"].Basefs.Median), fmtNum(rows["amp"].Basefs.Median), sizeText(o.GuestRead),
			fmtNum(rows["origin"].Baseline.Median), fmtNum(rows["amp"].Baseline.Median))
	}
	ways := []string{vLazy, vWarm, vEager, vLocal}
	line := func(file, title, ylabel, m string, vs []string) Figure {
		f := Figure{File: file, Kind: "line", Title: title, XLabel: "image size", YLabel: ylabel, LogX: len(o.BootSizes) > 1}
		for _, size := range o.BootSizes {
			f.Labels = append(f.Labels, sizeText(size))
			f.X = append(f.X, float64(size)/float64(GiB))
		}
		for _, v := range vs {
			sr := Series{Name: v}
			for _, size := range o.BootSizes {
				sr.Points = append(sr.Points, Summarize(got[key(v, size, m)]))
			}
			f.Series = append(f.Series, sr)
		}
		return f
	}
	r.Figures = append(r.Figures,
		line("cold-boot-sha", "Spawn → guest has read and hashed its first "+sizeText(o.GuestRead), "seconds (median, min–max)", "sha", ways),
		line("cold-boot-first", "Spawn → guest's first console line", "seconds (median, min–max)", "first", ways),
		line("cold-boot-running", "Spawn → domain running (provisioning)", "seconds (median, min–max)", "running", ways),
		line("cold-boot-origin", "Bytes taken from the origin (spawn → sha256 line)", "MiB", "origin", []string{vLazy, vEager}),
	)
	return nil
}

// speedup is baseline ÷ basefs for a lower-is-better row: "3.2×".
func speedup(row Row) string {
	if row.Baseline == nil || row.Basefs.Median == 0 {
		return "—"
	}
	return ratioText(row.Baseline.Median / row.Basefs.Median)
}

// ratioOf is a row's ratio (basefs ÷ baseline) as text.
func ratioOf(row Row) string {
	if row.Ratio == nil {
		return "—"
	}
	return fmtNum(*row.Ratio)
}

func sizesText(xs []int64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += sizeText(x)
	}
	return s
}

// sizeLabel is a size for file names: "1g", "512m".
func sizeLabel(n int64) string {
	if n%GiB == 0 {
		return fmt.Sprintf("%dg", n/GiB)
	}
	return fmt.Sprintf("%dm", n/MiB)
}

func bandwidthText(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmtNum(bps/1e9) + " Gbit/s"
	case bps >= 1e6:
		return fmtNum(bps/1e6) + " Mbit/s"
	}
	return fmtNum(bps) + " bit/s"
}
