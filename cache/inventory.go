package cache

import (
	"context"
	"fmt"
	"sort"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// ImageInfo is one line of `basefs ls`.
type ImageInfo = report.ImageInfo

// Presence counts m's non-hole chunks, those present in s, and their bytes on disk. A chunk
// used twice by one image counts twice.
func Presence(s *local.Store, m *chunkstore.Manifest) (present, total int, stored int64) {
	for _, d := range m.Chunks {
		if d.IsZero() {
			continue
		}
		total++
		if n, err := s.ChunkStoredSize(d); err == nil {
			present++
			stored += n
		}
	}
	return present, total, stored
}

// List describes every image whose manifest is in s, sorted by digest.
func List(ctx context.Context, s *local.Store) ([]ImageInfo, error) {
	var out []ImageInfo
	err := s.WalkManifests(ctx, func(d chunkstore.Digest) error {
		m, err := s.GetManifest(ctx, d)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
		p, t, b := Presence(s, m)
		out = append(out, ImageInfo{Digest: d, Size: m.Size, Chunks: len(m.Chunks), Holes: m.Holes(), Present: p, Total: t, StoredBytes: b})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Digest.String() < out[j].Digest.String() })
	return out, err
}

// CorruptChunk is a chunk that failed verification, with the images that use it.
type CorruptChunk struct {
	Digest chunkstore.Digest   `json:"chunk"`
	Error  string              `json:"error"`
	Images []chunkstore.Digest `json:"images"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Checked int            `json:"chunks_checked"`
	Bytes   int64          `json:"bytes_checked"`
	Missing int            `json:"chunks_missing"` // referenced, not present (normal for a lazy cache)
	Corrupt []CorruptChunk `json:"corrupt"`
}

// Verify re-hashes every stored chunk, or only those of the given images, and reports each
// corrupt chunk with the images that use it. It reads only; quarantine and repair are the
// caller's decision.
func Verify(ctx context.Context, s *local.Store, images []chunkstore.Digest, progress func(done, total int)) (*VerifyReport, error) {
	users := make(map[chunkstore.Digest][]chunkstore.Digest) // chunk → images
	if err := s.WalkManifests(ctx, func(d chunkstore.Digest) error {
		m, err := s.GetManifest(ctx, d)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
		for _, c := range m.Chunks {
			if !c.IsZero() {
				if u := users[c]; len(u) == 0 || u[len(u)-1] != d {
					users[c] = append(u, d)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var todo []chunkstore.Digest
	rep := &VerifyReport{}
	if len(images) == 0 {
		if err := s.WalkChunks(ctx, func(d chunkstore.Digest) error { todo = append(todo, d); return nil }); err != nil {
			return nil, err
		}
	} else {
		seen := make(map[chunkstore.Digest]bool)
		for _, im := range images {
			m, err := s.GetManifest(ctx, im)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", im, err)
			}
			for _, c := range m.Chunks {
				if c.IsZero() || seen[c] {
					continue
				}
				seen[c] = true
				if ok, _ := s.HasChunk(ctx, c); ok {
					todo = append(todo, c)
				} else {
					rep.Missing++
				}
			}
		}
	}
	for i, d := range todo {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := s.GetChunk(ctx, d)
		switch {
		case err == nil:
			rep.Bytes += int64(len(c.Data()))
		case chunkstore.IsCorrupt(err):
			rep.Corrupt = append(rep.Corrupt, CorruptChunk{Digest: d, Error: err.Error(), Images: users[d]})
		case chunkstore.IsNotFound(err):
			rep.Missing++ // removed while we walked
			continue
		default:
			return nil, err
		}
		rep.Checked++
		if progress != nil {
			progress(i+1, len(todo))
		}
	}
	return rep, nil
}
