package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/cmd/internal/cli"
	"github.com/basefs/basefs/daemon/control"
)

type prefetchOptions struct {
	state string
	base  string
	wait  bool
	json  bool
}

func (o *prefetchOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the daemon's state directory")
	f.StringVar(&o.base, "base", "", "the daemon's mount point (instead of --state)")
	f.BoolVar(&o.wait, "wait", false, "return when every image's fill ended (exit 1 if one is not wholly local)")
	f.BoolVar(&o.json, "json", false, "print JSON")
}

func init() {
	register("prefetch", command{
		summary: "fetch whole images in the background at the daemon's --prefetch-rate",
		usage:   "prefetch [--state DIR | --base MOUNTPOINT] [--wait] [--json] DIGEST|NOVA-NAME|glance://ID...",
		run:     runPrefetch,
	})
}

func runPrefetch(ctx context.Context, args []string) error {
	var o prefetchOptions
	f := newFlags("prefetch")
	o.AddFlags(f)
	if err := cli.Parse(f, args); err != nil {
		return err
	}
	if f.NArg() == 0 {
		return usageError{Msg: "prefetch wants at least one image: a digest, nova's name or glance://ID"}
	}
	var names []string
	for _, a := range f.Args() {
		if id, ok := strings.CutPrefix(a, "glance://"); ok {
			if err := glanceref.ValidateID(id); err != nil {
				return usageError{Msg: fmt.Sprintf("prefetch %s: %v", a, err)}
			}
			a = glanceref.NovaName(id)
		}
		names = append(names, a)
	}
	c, err := daemonClient(o.state, o.base)
	if err != nil {
		return err
	}
	var out []*cache.FillInfo
	for _, name := range names {
		fi, err := c.Prefetch(ctx, name)
		if err != nil {
			return err
		}
		if o.wait {
			if fi, err = waitFill(ctx, c, name, fi.Image); err != nil {
				return err
			}
		}
		out = append(out, fi)
	}
	if o.json {
		return cli.PrintJSON(os.Stdout, out)
	}
	incomplete := 0
	for i, fi := range out {
		fmt.Printf("%s: %s\n", names[i], fillLine(*fi))
		if o.wait && !fi.Complete {
			incomplete++
		}
	}
	if incomplete > 0 {
		return fmt.Errorf("%d image(s) not wholly local after their fill: see the daemon's log (the chunks left are fetched when read; prefetch again to retry)", incomplete)
	}
	return nil
}

// waitFill waits for image img's fill (the image called name) to end, drawing its progress on
// a terminal (the daemon answers the waiting request when the fill ends).
func waitFill(ctx context.Context, c *control.Client, name string, img chunkstore.Digest) (*cache.FillInfo, error) {
	type result struct {
		fi  *cache.FillInfo
		err error
	}
	res := make(chan result, 1)
	go func() {
		fi, err := c.Fill(ctx, img, true)
		res <- result{fi, err}
	}()
	bar := newProgress("prefetch " + name)
	defer bar.done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-res:
			return r.fi, r.err
		case <-tick.C:
			if !bar.on {
				continue
			}
			if fi, err := c.Fill(ctx, img, false); err == nil && fi.ToFetch > 0 {
				bar.update(fi.Chunks, fi.ToFetch)
			}
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), fmt.Errorf("prefetch %s: stopped waiting; the fill goes on in the daemon", name))
		}
	}
}

// fillLine tells a fill's progress in one line (basefs prefetch, basefs status).
func fillLine(fi cache.FillInfo) string {
	state := "running"
	switch {
	case fi.Running:
	case fi.Complete:
		state = "complete"
	case fi.Stopped != "":
		state = "stopped: " + fi.Stopped
	default:
		state = "ended incomplete"
	}
	todo := "?"
	if fi.ToFetch >= 0 {
		todo = fmt.Sprint(fi.ToFetch)
	}
	s := fmt.Sprintf("%s fill of %s at %s/s, %s: %d/%s chunks (%s) fetched in %.1f s",
		fi.Reason, fi.Image.Short(), humanBytes(fi.Rate), state, fi.Chunks, todo, humanBytes(fi.Bytes), fi.Seconds)
	if fi.Failed > 0 {
		s += fmt.Sprintf(", %d failed (fetched on read)", fi.Failed)
	}
	return s
}
