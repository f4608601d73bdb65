// Package bench is basefs-bench: reproducible benchmarks of basefs against the baselines a
// storage engineer runs today (nova's eager _base, a plain local file, go-fuse's loopback),
// measured in the same invocation on the same machine, and their report.
//
// Each scenario (read, verify-cost, cold-boot, real-boot, concurrent-cold, scale, dedup, storm) builds its own
// images from a seeded generator, runs the real binaries (basefs mount/import/publish,
// basefs-agent spawn/terminate, qemu-img, fio, dd, libvirtd) and its baselines alternately,
// run after run, and returns a Result: rows of medians with their spread (min–max), the
// ratio basefs ÷ baseline, figures, and the settings it ran with. Run writes results.json,
// report.md and the plots (SVG and PNG, gonum.org/v1/plot) to the output directory. Every
// number in the report comes from the run; none is typed in.
//
// Invariants:
//   - A scenario cleans up what it started (daemons, mounts, domains, files) before it
//     returns, also on failure or cancellation; a failed scenario is reported with its error
//     and the others still run.
//   - Origins of cold scenarios sit behind Shaper, a rate-limiting HTTP reverse proxy (one
//     shared link of a given bandwidth; each request waits one round trip), so a download's
//     cost is not hidden by loopback. Origin bytes are counted at the shaper, the same way
//     for basefs and for the baselines.
//   - The verify-cost scenario is the only one that mounts in-process (it needs
//     (*cache.Cache).SetVerify, which no binary exposes). The read scenario's go-fuse
//     loopback baseline is a process of its own, as basefs's daemon is: the running
//     executable again (LoopbackCommand, ServeLoopback), with basefs's mount options, no
//     passthrough, and its backing file read through the page cache, so that it costs what
//     FUSE costs and not what the disk does. Readers (fio, dd) are always other processes.
//   - The storm scenario's hosts are network namespaces of scripts/fleet.sh, each its own
//     daemon; the fleet's links to the services of the root namespace are this executable
//     again as a standalone Shaper (ShaperCommand, ServeShaper). Every storm starts from an
//     empty fleet (down, then up). Options.StormFrom "glance" adds a real Glance
//     (scripts/start-glance.sh) holding the image, the tier holding its manifest alone.
//   - With Options.ProfileDir the read scenario records the basefs serving process's CPU
//     profile (the control socket's /debug/pprof) during each of its runs and leaves the
//     profiles and their `go tool pprof -top` there.
//
// Locks: Shaper.mu guards the link's schedule only and is never held while sleeping or doing
// I/O. Nothing else in the package is shared between goroutines except through channels and
// the results of finished goroutines.
package bench
