package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/cmd/internal/cli"
)

type importOptions struct {
	state     string
	chunkSize int64
	json      bool
	glance    glanceOptions
	limits    limitsOptions
}

func (o *importOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.state, "state", defaultState, "the host's state directory")
	fs.Int64Var(&o.chunkSize, "chunk-size", chunkstore.DefaultChunkSize, "chunk size in bytes: a power of two from 65536 to 16777216")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.glance.AddFlags(fs)
	o.limits.AddFlags(fs)
}

func init() {
	register("import", command{
		summary: "import a disk image (any format qemu-img reads) into the local state",
		usage:   "import [--state DIR] [--chunk-size N] [--json] [--glance-endpoint URL] FILE|glance://ID",
		run:     runImport,
	})
}

func runImport(ctx context.Context, args []string) error {
	var o importOptions
	fs := newFlags("import")
	o.AddFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{Msg: "want exactly one FILE or glance://ID"}
	}
	if err := chunkstore.ValidChunkSize(o.chunkSize); err != nil {
		return usageError{Msg: "--chunk-size: " + err.Error()}
	}
	lim, err := o.limits.limits()
	if err != nil {
		return err
	}
	s, err := local.Open(o.state, local.Options{MinFree: lim.MinFree})
	if err != nil {
		return err
	}
	var id string
	if glanceref.IsRef(fs.Arg(0)) {
		if id, err = glanceref.ParseRef(fs.Arg(0)); err != nil {
			return usageError{Msg: err.Error()}
		}
	}
	var gc *glance.Client
	if id != "" {
		if gc, err = o.glance.open(ctx); err != nil {
			return err
		}
	}
	p := newProgress("importing")
	var res *importer.Result
	if id != "" {
		res, err = importGlance(ctx, gc, s, id, importer.Options{ChunkSize: o.chunkSize, Progress: p.update, Limits: lim})
	} else {
		res, err = importer.Import(ctx, s, fs.Arg(0), importer.Options{ChunkSize: o.chunkSize, Progress: p.update, Limits: lim})
	}
	p.done()
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(os.Stdout, res)
	}
	fmt.Printf("imported %s (%s): %s, %d chunks, %d holes, %d new chunks, %s stored\n",
		fs.Arg(0), res.Format, humanBytes(res.Size), res.Chunks, res.Holes, res.ChunksStored, humanBytes(res.BytesStored))
	fmt.Println(res.Digest)
	return nil
}
