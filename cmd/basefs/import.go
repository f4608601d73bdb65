package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
)

type importOptions struct {
	state     string
	chunkSize int64
	json      bool
	glance    glanceOptions
}

func (o *importOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.state, "state", defaultState, "the host's state directory")
	fs.Int64Var(&o.chunkSize, "chunk-size", chunkstore.DefaultChunkSize, "chunk size in bytes: a power of two from 65536 to 16777216")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.glance.AddFlags(fs)
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
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want exactly one FILE or glance://ID"}
	}
	if err := chunkstore.ValidChunkSize(o.chunkSize); err != nil {
		return usageError{"--chunk-size: " + err.Error()}
	}
	s, err := local.Open(o.state, local.Options{})
	if err != nil {
		return err
	}
	var id string
	if glanceref.IsRef(fs.Arg(0)) {
		if id, err = glanceref.ParseRef(fs.Arg(0)); err != nil {
			return usageError{err.Error()}
		}
	}
	p := newProgress("importing")
	var res *importer.Result
	if id != "" {
		res, err = importGlance(ctx, &o.glance, s, id, importer.Options{ChunkSize: o.chunkSize, Progress: p.update})
	} else {
		res, err = importer.Import(ctx, s, fs.Arg(0), importer.Options{ChunkSize: o.chunkSize, Progress: p.update})
	}
	p.done()
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(os.Stdout, res)
	}
	fmt.Printf("imported %s (%s): %s, %d chunks, %d holes, %d new chunks, %s stored\n",
		fs.Arg(0), res.Format, humanBytes(res.Size), res.Chunks, res.Holes, res.ChunksStored, humanBytes(res.BytesStored))
	fmt.Println(res.Digest)
	return nil
}

// importGlance imports Glance image id into s (streamed once, verified against Glance's
// hashes, converted if not raw) and records nova's name for it.
func importGlance(ctx context.Context, o *glanceOptions, s *local.Store, id string, opts importer.Options) (*importer.Result, error) {
	c, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	res, _, err := glance.Import(ctx, c, s, id, opts)
	if err != nil {
		return nil, err
	}
	if err := glanceimg.WriteAlias(s.Root(), id, res.Digest); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", id, err)
	}
	return res, nil
}
