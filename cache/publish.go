package cache

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/tier"
)

// PublishResult tells what Publish copied.
type PublishResult struct {
	Images         int   `json:"images"`
	Chunks         int   `json:"chunks"`          // distinct chunks the images use
	ChunksCopied   int   `json:"chunks_copied"`   // new in the target
	BytesCopied    int64 `json:"bytes_copied"`    // uncompressed bytes of the new chunks
	ChunksFetched  int   `json:"chunks_fetched"`  // taken from an origin (absent locally)
	ManifestsAdded int   `json:"manifests_added"` // new in the target
	Profiles       int   `json:"profiles"`        // boot profiles published with their manifests
}

// Publish copies the given images — manifest and every chunk — from the local state into
// dst, fetching chunks the state lacks from origins. Every chunk is verified as it is read.
// Chunks go first and each manifest last, so a reader of dst never finds a manifest whose
// chunks are missing; an interrupted publish leaves only whole, verified objects.
func Publish(ctx context.Context, src *local.Store, origins []chunkstore.Getter, dst chunkstore.Store, images []chunkstore.Digest, progress func(done, total int)) (*PublishResult, error) {
	res := &PublishResult{}
	from := tier.New(origins, nil)
	var manifests []*chunkstore.Manifest
	seen := make(map[chunkstore.Digest]bool)
	var todo []chunkstore.Digest
	for _, d := range images {
		m, err := src.GetManifest(ctx, d)
		if chunkstore.IsNotFound(err) {
			m, err = from.GetManifest(ctx, d)
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", d, err)
		}
		manifests = append(manifests, m)
		for _, c := range m.Chunks {
			if !c.IsZero() && !seen[c] {
				seen[c] = true
				todo = append(todo, c)
			}
		}
	}
	res.Images, res.Chunks = len(images), len(todo)
	var copied, fetched, done atomic.Int64
	var bytes atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, d := range todo {
		g.Go(func() error {
			defer func() {
				if progress != nil {
					progress(int(done.Add(1)), len(todo))
				}
			}()
			if ok, err := dst.HasChunk(gctx, d); err != nil || ok {
				return err
			}
			c, err := src.GetChunk(gctx, d)
			if chunkstore.IsNotFound(err) {
				if c, err = from.GetChunk(gctx, d); err == nil {
					fetched.Add(1)
				}
			}
			if err != nil {
				return fmt.Errorf("chunk %s: %w", d, err)
			}
			created, err := dst.PutChunk(gctx, c)
			if err != nil {
				return err
			}
			if created {
				copied.Add(1)
				bytes.Add(int64(len(c.Data())))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("publish to %s: %w", dst, err)
	}
	for i, m := range manifests {
		had, err := dst.HasManifest(ctx, images[i])
		if err != nil {
			return nil, err
		}
		if _, err := dst.PutManifest(ctx, m); err != nil {
			return nil, fmt.Errorf("publish to %s: %w", dst, err)
		}
		if !had {
			res.ManifestsAdded++
		}
		// The boot profile travels with the manifest, to layouts that can hold it.
		if prof, err := readProfile(src.Root(), images[i], len(m.Chunks)); err == nil {
			ps, ok := Profiles(dst)
			if !ok {
				continue
			}
			if err := ps.PutProfile(ctx, images[i], prof); err != nil {
				return nil, fmt.Errorf("publish profile of %s: %w", images[i].Short(), err)
			}
			res.Profiles++
		}
	}
	res.ChunksCopied, res.ChunksFetched, res.BytesCopied = int(copied.Load()), int(fetched.Load()), bytes.Load()
	return res, nil
}
