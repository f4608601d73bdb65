package bench

import (
	"fmt"
	"strings"
)

// The real-boot scenario's settings, rows, notes and figures, from the samples runRealBoot
// collected (series keys: way name, link index, metric).

// realBootSettings describes the scenario and its settings.
func realBootSettings(r *Result, o Options, img *osImage, size, alloc, qcow2Size int64, ims []*rbImage) {
	var sizes []string
	for _, im := range ims {
		sizes = append(sizes, sizeText(im.cs))
	}
	r.Measures = fmt.Sprintf("A real operating system — Debian 12 (bookworm) minbase with systemd, udev and its own kernel "+
		"and initramfs, built by `scripts/build-os-image.sh` — boots by direct kernel boot (%s, TCG here) on a qcow2 "+
		"overlay over its base image; time runs from the start of the spawn (of the download, for nova) to `login:` "+
		"on the serial console (systemd's serial getty). The image is imported and published at each chunk size "+
		"(%s); the basefs ways run at each. Ways, alternating order run by run: **%s** — "+
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
		o.VirtType, strings.Join(sizes, ", "), rbLazy, rbProfile, rbWarm, rbEager, rbLocal)
	bi := func(k string) string {
		if v, ok := img.build[k]; ok {
			return fmt.Sprint(v)
		}
		return "?"
	}
	r.set("image", "Debian 12 bookworm, kernel %s, %s packages; raw %s (%s allocated), qcow2 %s; built in %s s (%s s debootstrap)",
		bi("kernel"), bi("packages"), sizeText(size), mibText(alloc), mibText(qcow2Size), bi("seconds_total"), bi("seconds_debootstrap"))
	for _, im := range ims {
		r.set("published layout, "+sizeText(im.cs)+" chunks", "%d chunks, %d of them holes; %d distinct data chunks stored in %s of chunk objects (zstd where it saves)",
			im.imp.Chunks, im.imp.Holes, im.imp.ChunksStored, mibText(im.imp.BytesStored))
	}
	var links []string
	for _, l := range o.RealLinks {
		links = append(links, l.String())
	}
	r.set("origin links", "%s (a shaping reverse proxy in front of Go's http.FileServer on loopback)", strings.Join(links, "; "))
	r.set("guest", "1 vCPU, %s, virt type %s, disk cache=none, cmdline `%s`", osMemory, o.VirtType, osCmdline)
	r.set("daemon", "`basefs mount` defaults with background fill and scrub off; the image's chunk size is its manifest's")
	r.set("runs", "%d per link and way", o.Runs)
}

// realBootReport adds the rows, highlights, notes and figures.
func realBootReport(r *Result, o Options, got series, ims []*rbImage, tr *traceModel, qcow2Size int64) {
	s := func(v string, li int, m string) []float64 { return got[key(v, li, m)] }
	med := func(v string, li int, m string) float64 { return Summarize(s(v, li, m)).Median }
	for li, link := range o.RealLinks {
		L := link.String()
		login := func(v, base string) Row {
			return r.add("spawn → login:, "+L, "s", "lower", v, s(v, li, "login"), base, s(base, li, "login"))
		}
		eagerLocal := login(rbEager, rbLocal)
		for _, im := range ims {
			lazy, prof, warm := im.way(rbLazy), im.way(rbProfile), im.way(rbWarm)
			lazyLocal, profLocal, warmLocal := login(lazy, rbLocal), login(prof, rbLocal), login(warm, rbLocal)
			lazyEager := login(lazy, rbEager)
			login(prof, rbEager)
			r.add("spawn → running (provisioning), "+L, "s", "lower", lazy, s(lazy, li, "running"), rbEager, s(rbEager, li, "running"))
			bytesRow := func(metric, unit, v, base string, m string) Row {
				var b []float64
				if base != "" {
					b = s(base, li, m)
				}
				return r.add(metric+", "+L, unit, "lower", v, s(v, li, m), base, b)
			}
			bytesRow("origin bytes (start → login:)", "MiB", lazy, rbEager, "origin")
			bytesRow("origin bytes (start → login:)", "MiB", prof, rbEager, "origin")
			bytesRow("origin bytes (start → login:)", "MiB", warm, "", "origin")
			lazyA := bytesRow("origin bytes ÷ bytes the guest read", "×", lazy, rbEager, "amp")
			profA := bytesRow("origin bytes ÷ bytes the guest read", "×", prof, rbEager, "amp")
			bytesRow("chunk bytes fetched, uncompressed (the daemon's count, start → login:)", "MiB", lazy, prof, "chunks")
			lazyCA := bytesRow("uncompressed chunk bytes fetched ÷ bytes the guest read", "×", lazy, prof, "chunkamp")
			bytesRow("origin requests (start → login:)", "", lazy, prof, "requests")
			guest := bytesRow("bytes the guest read (rd_bytes at login:)", "MiB", lazy, rbLocal, "guest")
			bytesRow("bytes read through the mount (start → login:)", "MiB", lazy, warm, "mount")
			r.highlight("%s, %s chunks: spawn → login: local raw %s s; basefs cold lazy %s s (%s× local), with a boot profile %s s (%s× local), warm %s s (%s× local); nova eager %s s (%s× local; lazy ÷ eager %s)",
				L, sizeText(im.cs), fmtNum(lazyLocal.Baseline.Median), fmtNum(lazyLocal.Basefs.Median), ratioOf(lazyLocal),
				fmtNum(profLocal.Basefs.Median), ratioOf(profLocal), fmtNum(warmLocal.Basefs.Median), ratioOf(warmLocal),
				fmtNum(eagerLocal.Basefs.Median), ratioOf(eagerLocal), ratioOf(lazyEager))
			r.highlight("%s, %s chunks: origin bytes lazy %s MiB = %s× the %s MiB the guest read (compressed chunk objects, %s requests; uncompressed %s MiB = %s×); with a boot profile %s MiB (%s×); nova eager %s MiB (%s×)",
				L, sizeText(im.cs), fmtNum(med(lazy, li, "origin")), fmtNum(lazyA.Basefs.Median), fmtNum(guest.Basefs.Median),
				fmtNum(med(lazy, li, "requests")), fmtNum(med(lazy, li, "chunks")), fmtNum(lazyCA.Basefs.Median),
				fmtNum(med(prof, li, "origin")), fmtNum(profA.Basefs.Median), fmtNum(med(rbEager, li, "origin")), fmtNum(lazyA.Baseline.Median))
		}
		// The first chunk size against each other one.
		for _, other := range ims[1:] {
			for _, v := range []string{rbLazy, rbProfile} {
				a, b := ims[0].way(v), other.way(v)
				r.add("spawn → login:, "+L, "s", "lower", a, s(a, li, "login"), b, s(b, li, "login"))
			}
			a, b := ims[0].way(rbLazy), other.way(rbLazy)
			for _, m := range []struct{ metric, unit, key string }{
				{"origin bytes (start → login:)", "MiB", "origin"},
				{"chunk bytes fetched, uncompressed (the daemon's count, start → login:)", "MiB", "chunks"},
				{"origin requests (start → login:)", "", "requests"},
			} {
				r.add(m.metric+", "+L, m.unit, "lower", a, s(a, li, m.key), b, s(b, li, m.key))
			}
		}
		dl := Summarize(s(rbEager, li, "download"))
		r.note("%s, nova eager: download of the %s qcow2 and conversion took %s s (median; %s–%s) of its %s s to login:.",
			L, mibText(qcow2Size), fmtNum(dl.Median), fmtNum(dl.Min), fmtNum(dl.Max), fmtNum(eagerLocal.Basefs.Median))
	}
	// Issue 16's targets, stated against the figures above.
	if len(o.RealLinks) == 2 {
		for _, im := range ims {
			lazy, prof := im.way(rbLazy), im.way(rbProfile)
			lazy1 := ratioOfMedians(s(lazy, 0, "login"), s(rbLocal, 0, "login"))
			prof2 := ratioOfMedians(s(prof, 1, "login"), s(rbLocal, 1, "login"))
			amp := max(med(lazy, 0, "amp"), med(lazy, 1, "amp"))
			camp := max(med(lazy, 0, "chunkamp"), med(lazy, 1, "chunkamp"))
			r.highlight("issue 16 targets, %s chunks: origin bytes ÷ guest read ≤ 1.5× (lazy, worse link): %s %s — on the wire, compressed; uncompressed chunk bytes ÷ guest read %s %s; lazy ÷ local ≤ 1.1× at %s: %s %s; with profile ÷ local ≤ 1.3× at %s: %s %s",
				sizeText(im.cs), fmtNum(amp), met(amp <= 1.5), fmtNum(camp), met(camp <= 1.5), o.RealLinks[0], fmtNum(lazy1), met(lazy1 <= 1.1), o.RealLinks[1], fmtNum(prof2), met(prof2 <= 1.3))
		}
	}

	// What the guest read, and what each fetch granularity would cost.
	r.add("traced boot: bytes the guest read (blk_co_preadv, sum)", "MiB", "lower", rbLocal, []float64{float64(tr.sum) / float64(MiB)}, "", nil)
	r.add("traced boot: distinct bytes the guest read", "MiB", "lower", rbLocal, []float64{float64(tr.uniq) / float64(MiB)}, "", nil)
	var costs []string
	for _, u := range tr.gu {
		g := sizeText(u.Granule)
		r.add(fmt.Sprintf("traced boot, %s chunks: data chunks touched (one request each)", g), "", "lower",
			rbLocal, []float64{float64(u.Blocks)}, "", nil)
		r.add(fmt.Sprintf("traced boot, %s chunks: their bytes, uncompressed", g), "MiB", "lower",
			rbLocal, []float64{float64(u.Bytes) / float64(MiB)}, "", nil)
		r.add(fmt.Sprintf("traced boot, %s chunks: their stored objects (the bytes on the wire)", g), "MiB", "lower",
			rbLocal, []float64{float64(u.Stored) / float64(MiB)}, "", nil)
		costs = append(costs, fmt.Sprintf("%s → %d chunks, %s (%s×), %s stored (%s×)", g, u.Blocks,
			mibText(u.Bytes), fmtNum(float64(u.Bytes)/float64(tr.uniq)), mibText(u.Stored), fmtNum(float64(u.Stored)/float64(tr.uniq))))
	}
	for li, link := range o.RealLinks {
		for _, im := range ims {
			u, lazy := tr.at(im.cs), im.way(rbLazy)
			r.note("Model check, %s, %s chunks: the traced boot predicts %d requests, %s uncompressed and %s on the wire; the cold lazy boots fetched %s MiB uncompressed chunk bytes and took %s MiB from the origin in %s requests (medians; the manifest is one more request).",
				link, sizeText(im.cs), u.Blocks, mibText(u.Bytes), mibText(u.Stored), fmtNum(med(lazy, li, "chunks")),
				fmtNum(med(lazy, li, "origin")), fmtNum(med(lazy, li, "requests")))
		}
	}
	r.note("Traced boot: %d reads, %s in all, %s distinct; read sizes: %s.", len(tr.xs), mibText(tr.sum), mibText(tr.uniq), readSizeHistogram(tr.xs))
	r.highlight("what the guest reads (traced local boot): %s distinct bytes in %d reads; fetching the whole chunks they touch, by chunk size: %s",
		mibText(tr.uniq), len(tr.xs), strings.Join(costs, "; "))
	for _, im := range ims {
		r.note("Boot profile, %s chunks: recorded by a previous host's cold lazy boot over %s with `--profile-window %s` (that boot reached login: in %.1f s): %d chunks (%s).",
			sizeText(im.cs), o.RealLinks[0], o.ProfileWindow, im.recLogin, im.profChunks, mibText(int64(im.profChunks)*im.cs))
	}

	// Figures.
	ways := []string{rbLocal}
	var origin, amp []string
	for _, im := range ims {
		ways = append(ways, im.way(rbLazy), im.way(rbProfile), im.way(rbWarm))
		origin = append(origin, im.way(rbLazy), im.way(rbProfile), im.way(rbWarm))
		amp = append(amp, im.way(rbLazy), im.way(rbProfile))
	}
	ways, origin, amp = append(ways, rbEager), append(origin, rbEager), append(amp, rbEager)
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
	r.Figures = append(r.Figures,
		bar("real-boot-login", "Real OS: spawn → login: on the serial console", "seconds (median, min–max)", "login", ways),
		bar("real-boot-origin", "Real OS: bytes taken from the origin (start → login:)", "MiB", "origin", origin),
		bar("real-boot-amp", "Real OS: origin bytes ÷ bytes the guest read", "×", "amp", amp),
		tr.figure(),
	)
}
