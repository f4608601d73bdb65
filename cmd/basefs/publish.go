package main

import (
	"context"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/origin"
	"github.com/basefs/basefs/cmd/internal/cli"
)

type publishOptions struct {
	state   string
	to      string
	origins []string
	json    bool
	glance  glanceOptions
	s3      s3Options
	limits  limitsOptions
}

func (o *publishOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the host's state directory")
	f.StringVar(&o.to, "to", "", "where to publish: dir:///PATH (served as is by dir:// and http:// origins) or s3://BUCKET[/PREFIX] (the shared tier; the bucket is created if missing)")
	f.StringArrayVar(&o.origins, "origin", nil, "fetch chunks the state lacks from this origin (repeatable)")
	f.BoolVar(&o.json, "json", false, "print JSON")
	o.glance.AddFlags(f)
	o.s3.AddFlags(f)
	o.limits.AddFlags(f)
}

func init() {
	register("publish", command{
		summary: "copy images (manifests and chunks) into a published layout",
		usage:   "publish --state DIR --to dir:///PATH|s3://BUCKET[/PREFIX] [--origin URL]... [--glance-endpoint URL] DIGEST|glance://ID...",
		run:     runPublish,
	})
}

func runPublish(ctx context.Context, args []string) error {
	var o publishOptions
	f := newFlags("publish")
	o.AddFlags(f)
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() == 0 {
		return usageError{Msg: "name at least one image DIGEST"}
	}
	lim, err := o.limits.limits()
	if err != nil {
		return err
	}
	var images []chunkstore.Digest
	glanceIDs := map[int]string{} // index in images → Glance id
	for _, a := range f.Args() {
		if glanceref.IsRef(a) {
			id, err := glanceref.ParseRef(a)
			if err != nil {
				return usageError{Msg: err.Error()}
			}
			glanceIDs[len(images)] = id
			images = append(images, chunkstore.Digest{})
			continue
		}
		d, err := chunkstore.ParseDigest(a)
		if err != nil {
			return usageError{Msg: err.Error()}
		}
		images = append(images, d)
	}
	if u, err := url.Parse(o.to); err != nil || !(u.Scheme == "dir" && u.Host == "" && len(u.Path) >= 2 && u.Path[0] == '/' || origin.IsS3(o.to)) {
		return usageError{Msg: fmt.Sprintf("--to %q: want dir:///absolute/path or s3://BUCKET[/PREFIX]", o.to)}
	}
	origins, err := o.s3.openOrigins(ctx, o.origins, nil)
	if err != nil {
		return err
	}
	var src *local.Store
	if len(glanceIDs) > 0 {
		src, err = local.Open(o.state, local.Options{MinFree: lim.MinFree}) // Glance images are imported into it
	} else {
		src, err = openExisting(o.state)
	}
	if err != nil {
		return err
	}
	dst, err := origin.OpenTarget(ctx, o.to, o.s3.originOptions(nil))
	if err != nil {
		return err
	}
	var gc *glance.Client
	if len(glanceIDs) > 0 {
		if gc, err = o.glance.open(ctx); err != nil {
			return err
		}
		// Convert if needed and chunk into the local state first (verified against Glance's hashes).
		for i, id := range glanceIDs {
			ip := newProgress("importing " + id)
			res, err := importGlance(ctx, gc, src, id, importer.Options{Progress: ip.update, Limits: lim})
			ip.done()
			if err != nil {
				return err
			}
			images[i] = res.Digest
		}
	}
	p := newProgress("publishing")
	res, err := cache.Publish(ctx, src, origins, dst, images, func(done, total int) { p.update(int64(done), int64(total)) })
	p.done()
	if err != nil {
		return err
	}
	// Last, so a host that finds the property finds the manifest and chunks published.
	for i, id := range glanceIDs {
		if err := gc.SetProperty(ctx, id, glance.ManifestProperty, images[i].String()); err != nil {
			return fmt.Errorf("published image %s, but cannot record it on Glance image %s: %w", images[i], id, err)
		}
		if !o.json {
			fmt.Printf("glance://%s: %s=%s\n", id, glance.ManifestProperty, images[i])
		}
	}
	if o.json {
		return cli.PrintJSON(os.Stdout, res)
	}
	fmt.Printf("published %d image(s) to %s: %d chunks, %d new (%s), %d fetched from origins, %d new manifests\n",
		res.Images, o.to, res.Chunks, res.ChunksCopied, humanBytes(res.BytesCopied), res.ChunksFetched, res.ManifestsAdded)
	return nil
}
