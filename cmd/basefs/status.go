package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/cmd/internal/cli"
	"github.com/basefs/basefs/daemon/control"
)

type statusOptions struct {
	state string
	base  string
	json  bool
}

func (o *statusOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the daemon's state directory")
	f.StringVar(&o.base, "base", "", "the daemon's mount point (instead of --state)")
	f.BoolVar(&o.json, "json", false, "print JSON")
}

func init() {
	register("status", command{
		summary: "show the running daemon's images and counters",
		usage:   "status [--state DIR | --base MOUNTPOINT] [--json]",
		run:     runStatus,
	})
}

func runStatus(ctx context.Context, args []string) error {
	var o statusOptions
	f := newFlags("status")
	o.AddFlags(f)
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	sock := control.SocketFromState(o.state)
	if o.base != "" {
		var err error
		if sock, err = control.SocketFromMount(o.base); err != nil {
			return err
		}
	}
	st, err := control.NewClient(sock).Status(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(os.Stdout, st)
	}
	s := st.Stats
	fmt.Printf("mount %s, state %s, pid %d, version %s\n", st.Mountpoint, st.State, st.PID, st.Version)
	fmt.Printf("reads %d (%s), memory hits %d, read errors %d, fetches in flight %d\n", s.Reads, humanBytes(s.BytesRead), s.MemoryHits, s.ReadErrors, s.FetchesInFlight)
	fmt.Printf("local corrupt %d, repairs %d, manifests fetched %d\n", s.LocalCorrupt, s.Repairs, s.ManifestFetches)
	if g := st.Glance; g != nil {
		if g.Error != "" {
			fmt.Printf("glance: ERROR %s\n", g.Error)
		}
		if c := g.Catalog; c != nil {
			fmt.Printf("glance listing: %d images known under nova's names, %d listings", c.Images, c.Listings)
			if c.LastError != "" {
				fmt.Printf(", last failed: %s", c.LastError)
			}
			fmt.Println()
		}
		if l := g.Layer; l != nil {
			fmt.Printf("glance images: %d completion retries, %d shared-tier index entries ignored (not backed by %s), %d %s recorded\n",
				l.CompletionRetries, l.TierIndexIgnored, glance.ManifestProperty, l.ManifestsRecorded, glance.ManifestProperty)
			for _, c := range l.Completing {
				fmt.Printf("  glance://%s: completion attempt %d failed (%s); next try %s\n", c.GlanceID, c.Attempts, c.LastError, c.NextTry.Format(time.RFC3339))
			}
		}
	}
	if m := st.Manager; m != nil {
		fmt.Printf("cache manager: %d images removed (%s freed), %d unlinks refused (in use), %d utimes, %d downloads adopted\n",
			m.ImagesRemoved, humanBytes(m.BytesFreed), m.RemoveRefused, m.Touched, m.Adopted)
		fmt.Printf("precache: %d utimes to now (%d of images in use: no fill), %d prefetches, %d fills started; background fill %s in %d chunks\n",
			m.PrecacheAsked, m.PrecacheInUse, m.Prefetches, m.PrecacheStarted, humanBytes(m.FilledBytes), m.FilledChunks)
	}
	for _, fi := range st.Fills {
		fmt.Printf("fill %s\n", fillLine(fi))
	}
	if w := st.Writable; w != nil {
		fmt.Printf("writable files: %d (%s on local disk)\n", w.Files, humanBytes(w.Bytes))
	}
	for _, r := range st.Refused {
		fmt.Printf("refused %s at %s: %s\n", r.Name, r.At.Format(time.RFC3339), r.Reason)
	}
	if p := st.Peers; p != nil {
		fmt.Printf("peers: %d members; served %d chunks (%s) and %d manifests to peers, %d failed; refused %d unauthenticated requests; "+
			"took %d manifests from peers; refused %d corrupt chunks or manifests from peers; %d requests to peers failed\n",
			p.Members, p.Served, humanBytes(p.ServedBytes), p.ServedManifests, p.Failed, p.Refused, p.Manifests, p.Corrupt, p.AskFailed)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGIN\tFETCHES\tBYTES\tCORRUPT\tERRORS")
	for _, o := range s.Origins {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", o.Origin, o.Fetches, humanBytes(o.Bytes), o.Corrupt, o.Errors)
	}
	fmt.Fprintln(tw, "IMAGE\tSIZE\tPRESENT\tSTORED\t")
	for _, im := range st.Images {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t\n", im.Digest, humanBytes(im.Size), im.Present, im.Total, humanBytes(im.StoredBytes))
	}
	return tw.Flush()
}
