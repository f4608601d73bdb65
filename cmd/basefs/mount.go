package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/config"
	"github.com/basefs/basefs/fs"
)

type mountOptions struct {
	state       string
	origins     []string
	metricsAddr string
	memoryCache int64
	debug       bool

	instancesPaths []string
	minAge         int64
	removeUnused   bool
	cacheSize      int64
	scrubRate      int64
	fillRate       int64
	prefetchRate   int64
	precacheDelay  time.Duration
	profileWindow  time.Duration
	interval       time.Duration
	glance         glanceOptions
	owner          string
	group          string
	limits         limitsOptions

	// The shared S3 tier (cmd/basefs/s3.go).
	s3        s3Options
	writeBack bool
	// The peer tier (cmd/basefs/peer.go).
	peers peerOptions

	adopt bool // (hidden) a supervisor started by the serving process: fds 3–5 (handover.go)
	relay bool // (hidden) relay requests even where the kernel can resend (tests the fallback)
}

func (o *mountOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the host's state directory")
	f.StringArrayVar(&o.origins, "origin", nil, "an origin to fetch missing chunks and manifests from, asked in order: dir:///PATH, http(s)://HOST/PATH or s3://BUCKET[/PREFIX] (repeatable)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)")
	f.Int64Var(&o.memoryCache, "memory-cache", 256<<20, "bytes of recently verified chunks kept in memory (0: none)")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request")
	f.StringArrayVar(&o.instancesPaths, "instances-path", []string{"/var/lib/basefs/instances"}, "instance directories scanned for overlays whose bases are in use (repeatable)")
	f.Int64Var(&o.minAge, "remove-unused-original-min-age", 86400, "seconds an image must be unused before cleanup removes it (nova's default; 0: as soon as it is unused)")
	f.BoolVar(&o.removeUnused, "remove-unused-base-images", true, "cleanup removes images unused for longer than --remove-unused-original-min-age (nova's remove_unused_base_images; false: never, the capacity bound still applies)")
	f.Int64Var(&o.cacheSize, "cache-size", -1, "bound on the bytes of local chunks (-1: no bound; 0: keep only chunks of images in use that no origin has)")
	f.Int64Var(&o.scrubRate, "scrub-rate", 16<<20, "bytes a second background scrub re-verifies (0: off)")
	f.Int64Var(&o.fillRate, "fill-rate", 32<<20, "bytes a second background fill fetches after an image's first use (0: off)")
	f.Int64Var(&o.prefetchRate, "prefetch-rate", 32<<20, "bytes a second a precache (utime to now of an image no instance uses: nova's cache_image) or basefs prefetch fetches the whole image at (0: off; utime only records use)")
	f.DurationVar(&o.precacheDelay, "precache-delay", 10*time.Second, "how long a precache waits before it fetches, then only if the image is still unused (nova's spawn utimes a base just before it makes the overlay; 0: at once)")
	f.DurationVar(&o.profileWindow, "profile-window", 30*time.Second, "how long after an image's first read its boot profile is recorded (0: off)")
	f.DurationVar(&o.interval, "manager-interval", 10*time.Minute, "how often cleanup and the capacity bound run (0: never on their own; basefs gc runs them)")
	f.StringVar(&o.owner, "owner", "0", "`USER` (or UID) owning the mount's root and its images, and allowed on the control socket besides root: nova-compute's user (its utime of a base image needs it)")
	f.StringVar(&o.group, "group", "kvm", "`GROUP` (or GID) that may read images besides root and the owner: the hypervisor's (qemu runs as libvirt-qemu, group kvm); no other local user may look up, list or read them")
	o.glance.AddFlags(f)
	o.limits.AddFlags(f)
	// The shared S3 tier (cmd/basefs/s3.go).
	o.s3.AddFlags(f)
	o.peers.AddFlags(f)
	f.BoolVar(&o.writeBack, "write-back", false, "also write chunks and manifests fetched from origins behind the first s3:// origin to it (asynchronously, put-if-absent)")
	f.BoolVar(&o.adopt, adoptFlag, false, "(internal) supervise the serving process that started this one")
	f.MarkHidden(adoptFlag)
	f.BoolVar(&o.relay, "relay", false, "(internal) relay requests to the serving process, as on a kernel without FUSE_NOTIFY_RESEND")
	f.MarkHidden("relay")
}

func init() {
	register("mount", command{
		summary: "serve the _base file system at MOUNTPOINT until SIGINT/SIGTERM",
		usage:   "mount [--config FILE] [--nova-config FILE] [--state DIR] [--origin URL]... [--metrics-addr ADDR] [MOUNTPOINT]",
		run:     runMount,
	})
}

func runMount(ctx context.Context, args []string) error {
	o, f, _, mnt, err := parseMount(ctx, "mount", args)
	if err != nil {
		return err
	}
	// Serving processes read the configuration again (a reload applies a changed file) but
	// keep this state directory and mount point.
	state, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	if f.NArg() == 0 && !o.adopt {
		// The mount point is nova's: name it on this process's own command line, which is
		// how basefs restart and stop recognise a supervisor (checkSupervisor).
		self, err := executable()
		if err != nil {
			return err
		}
		return syscall.Exec(self, append(slices.Clone(os.Args), mnt), os.Environ())
	}
	return supervise(ctx, *o, mnt, append([]string{"--state=" + state}, args...))
}

// parseMount reads the mount's settings (command line, configuration file, nova.conf) as
// command name (mount, config) and checks them all: bad input fails before anything is done.
func parseMount(ctx context.Context, name string, args []string) (*mountOptions, *pflag.FlagSet, *config.Result, string, error) {
	o := new(mountOptions)
	f := newFlags(name)
	o.AddFlags(f)
	r, err := parseFlags(f, args)
	if err != nil {
		return nil, nil, nil, "", err
	}
	mnt, err := mountPoint(f, r)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if err := o.validate(); err != nil {
		return nil, nil, nil, "", explain(r, err)
	}
	if _, err := o.s3.openOrigins(ctx, o.origins, slog.New(slog.DiscardHandler)); err != nil {
		return nil, nil, nil, "", explain(r, err)
	}
	return o, f, r, mnt, nil
}

// validate refuses settings that mean nothing (a negative size, rate or age).
func (o *mountOptions) validate() error {
	for _, v := range []struct {
		name string
		v    int64
	}{{"--memory-cache", o.memoryCache}, {"--remove-unused-original-min-age", o.minAge}, {"--scrub-rate", o.scrubRate}, {"--fill-rate", o.fillRate}, {"--prefetch-rate", o.prefetchRate}} {
		if v.v < 0 {
			return usageError{Msg: fmt.Sprintf("%s %d: must be 0 or more", v.name, v.v)}
		}
	}
	if _, err := o.limits.limits(); err != nil {
		return err
	}
	if o.cacheSize < -1 {
		return usageError{Msg: fmt.Sprintf("--cache-size %d: must be -1 (no bound) or 0 or more bytes", o.cacheSize)}
	}
	for _, v := range []struct {
		name string
		v    time.Duration
	}{{"--profile-window", o.profileWindow}, {"--manager-interval", o.interval}, {"--precache-delay", o.precacheDelay}} {
		if v.v < 0 {
			return usageError{Msg: fmt.Sprintf("%s %s: must be 0 or more", v.name, v.v)}
		}
	}
	if _, err := o.access(); err != nil {
		return usageError{Msg: err.Error()}
	}
	if err := o.peers.validate(); err != nil {
		return err
	}
	return o.glance.validate()
}

// access returns who may use the mount besides root: --owner's uid and --group's gid.
func (o *mountOptions) access() (fs.Access, error) {
	uid, err := lookupID(o.owner, user.Lookup, func(u *user.User) string { return u.Uid })
	if err != nil {
		return fs.Access{}, fmt.Errorf("--owner %q: no such user (give USER or UID: nova-compute's)", o.owner)
	}
	gid, err := lookupID(o.group, user.LookupGroup, func(g *user.Group) string { return g.Gid })
	if err != nil {
		return fs.Access{}, fmt.Errorf("--group %q: no such group (give GROUP or GID: the one qemu runs in, e.g. kvm)", o.group)
	}
	return fs.Access{Uid: uid, Gid: gid}, nil
}

// lookupID parses a numeric id, or looks the name up.
func lookupID[T any](s string, lookup func(string) (T, error), id func(T) string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	v, err := lookup(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(id(v), 10, 32)
	return uint32(n), err
}
