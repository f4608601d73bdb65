package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/cli"
	"github.com/basefs/basefs/daemon/control"
)

type gcOptions struct {
	state string
	base  string
	dry   bool
	json  bool
}

func (o *gcOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the daemon's state directory")
	f.StringVar(&o.base, "base", "", "the daemon's mount point (instead of --state)")
	f.BoolVar(&o.dry, "dry-run", false, "show what would be removed and why; change nothing")
	f.BoolVar(&o.json, "json", false, "print JSON")
}

func init() {
	register("gc", command{
		summary: "remove unused images after the minimum age and apply the capacity bound, now",
		usage:   "gc [--state DIR | --base MOUNTPOINT] [--dry-run] [--json]",
		run:     runGC,
	})
}

// daemonClient finds the running daemon from --base or --state.
func daemonClient(state, base string) (*control.Client, error) {
	sock := control.SocketFromState(state)
	if base != "" {
		var err error
		if sock, err = control.SocketFromMount(base); err != nil {
			return nil, err
		}
	}
	return control.NewClient(sock), nil
}

func runGC(ctx context.Context, args []string) error {
	var o gcOptions
	f := newFlags("gc")
	o.AddFlags(f)
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() != 0 {
		return usageError{Msg: "gc takes no arguments"}
	}
	c, err := daemonClient(o.state, o.base)
	if err != nil {
		return err
	}
	// Cleanup needs the daemon: it knows which images are open and in use.
	rep, err := c.GC(ctx, o.dry)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(os.Stdout, rep)
	}
	verb := "removed"
	if o.dry {
		verb = "would remove"
	}
	for _, im := range rep.Images {
		users := ""
		if len(im.Users) > 0 {
			users = fmt.Sprintf(" (%v)", im.Users)
		}
		fmt.Printf("%-6s %s: %s%s\n", im.Action, im.Digest, im.Reason, users)
	}
	fmt.Printf("%s %d chunks (%s) of removed images; evicted %d chunks (%s) for the capacity bound; %s stored\n",
		verb, rep.ChunksRemoved, humanBytes(rep.BytesFreed), rep.Evicted, humanBytes(rep.EvictedBytes), humanBytes(rep.StoredBytes))
	return nil
}
