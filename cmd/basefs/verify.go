package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/cmd/internal/cli"
)

type verifyOptions struct {
	state  string
	base   string
	repair bool
	json   bool
}

func (o *verifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.state, "state", defaultState, "the host's state directory")
	fs.StringVar(&o.base, "base", "", "with --repair: the daemon's mount point (instead of --state)")
	fs.BoolVar(&o.repair, "repair", false, "ask the running daemon to re-verify every local chunk now and repair corrupt ones from its origins")
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

func init() {
	register("verify", command{
		summary: "re-hash stored chunks (all, or those of the given images); exit 1 if any is corrupt",
		usage:   "verify [--state DIR] [--json] [DIGEST...] | verify --repair [--state DIR | --base MOUNTPOINT] [--json]",
		run:     runVerify,
	})
}

// errCorrupt makes verify exit non-zero after printing its report.
type errCorrupt int

func (e errCorrupt) Error() string { return fmt.Sprintf("%d corrupt chunk(s)", int(e)) }

func runVerify(ctx context.Context, args []string) error {
	var o verifyOptions
	fs := newFlags("verify")
	o.AddFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.repair {
		if fs.NArg() != 0 {
			return usageError{Msg: "--repair re-verifies every local chunk; it takes no DIGEST"}
		}
		return runRepair(ctx, o)
	}
	var images []chunkstore.Digest
	for _, a := range fs.Args() {
		d, err := chunkstore.ParseDigest(a)
		if err != nil {
			return usageError{Msg: err.Error()}
		}
		images = append(images, d)
	}
	s, err := openExisting(o.state)
	if err != nil {
		return err
	}
	p := newProgress("verifying")
	rep, err := cache.Verify(ctx, s, images, func(done, total int) { p.update(int64(done), int64(total)) })
	p.done()
	if err != nil {
		return err
	}
	if o.json {
		if rep.Corrupt == nil {
			rep.Corrupt = []cache.CorruptChunk{}
		}
		if err := cli.PrintJSON(os.Stdout, rep); err != nil {
			return err
		}
	} else {
		for _, c := range rep.Corrupt {
			fmt.Printf("CORRUPT chunk %s used by", c.Digest)
			if len(c.Images) == 0 {
				fmt.Print(" no image")
			}
			for _, im := range c.Images {
				fmt.Printf(" %s", im)
			}
			fmt.Printf(": %s\n", c.Error)
		}
		fmt.Printf("verified %d chunks (%s): %d corrupt, %d not present locally\n", rep.Checked, humanBytes(rep.Bytes), len(rep.Corrupt), rep.Missing)
	}
	if len(rep.Corrupt) > 0 {
		return errCorrupt(len(rep.Corrupt))
	}
	return nil
}

func runRepair(ctx context.Context, o verifyOptions) error {
	c, err := daemonClient(o.state, o.base)
	if err != nil {
		return err
	}
	rep, err := c.Scrub(ctx)
	if err != nil {
		return fmt.Errorf("repair needs the running daemon (basefs mount), which has the origins: %w", err)
	}
	if o.json {
		if err := cli.PrintJSON(os.Stdout, rep); err != nil {
			return err
		}
	} else {
		for _, d := range rep.Corrupt {
			fmt.Printf("CORRUPT chunk %s: quarantined\n", d)
		}
		for _, f := range rep.Failed {
			fmt.Printf("NOT REPAIRED: %s\n", f)
		}
		fmt.Printf("verified %d chunks (%s): %d corrupt, %d repaired\n", rep.Checked, humanBytes(rep.Bytes), len(rep.Corrupt), rep.Repaired)
	}
	if len(rep.Failed) > 0 {
		return fmt.Errorf("%d corrupt chunk(s) could not be repaired", len(rep.Failed))
	}
	return nil
}
