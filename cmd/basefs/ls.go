package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/cmd/internal/cli"
)

type lsOptions struct {
	state string
	json  bool
}

func (o *lsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.state, "state", defaultState, "the host's state directory")
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

func init() {
	register("ls", command{
		summary: "list the images in the local state",
		usage:   "ls [--state DIR] [--json]",
		run:     runLs,
	})
}

func openExisting(state string) (*local.Store, error) {
	fi, err := os.Stat(state)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w (import an image first, or pass --state)", state, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state %s: not a directory", state)
	}
	return local.Open(state, local.Options{ReadOnly: true})
}

func runLs(ctx context.Context, args []string) error {
	var o lsOptions
	fs := newFlags("ls")
	o.AddFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{Msg: "ls takes no arguments"}
	}
	s, err := openExisting(o.state)
	if err != nil {
		return err
	}
	imgs, err := cache.List(ctx, s)
	if err != nil {
		return err
	}
	if o.json {
		if imgs == nil {
			imgs = []cache.ImageInfo{}
		}
		return cli.PrintJSON(os.Stdout, imgs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tSIZE\tCHUNKS\tPRESENT\tSTORED")
	for _, im := range imgs {
		fmt.Fprintf(tw, "%s\t%s\t%d (%d holes)\t%d/%d\t%s\n", im.Digest, humanBytes(im.Size), im.Chunks, im.Holes, im.Present, im.Total, humanBytes(im.StoredBytes))
	}
	return tw.Flush()
}
