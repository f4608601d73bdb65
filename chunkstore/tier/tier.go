package tier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore"
)

// Counters are one origin's counters.
type Counters struct {
	Fetches, Bytes  atomic.Int64 // chunks served, and their uncompressed bytes
	Misses          atomic.Int64 // chunks asked for that it does not hold
	Corrupt, Errors atomic.Int64 // bad bytes, failures (after the backend's own retries)
	Manifests       atomic.Int64 // manifests served
}

// Tiered is an ordered list of origins; it is a chunkstore.Getter itself.
type Tiered struct {
	tiers   []chunkstore.Getter
	stats   []Counters
	log     *slog.Logger
	observe func(tier int, d time.Duration, err error) // each chunk request's latency
}

// Observe sets a function told of every chunk request to an origin: which, how long, and its
// error (nil: served). Set it before use.
func (t *Tiered) Observe(f func(tier int, d time.Duration, err error)) { t.observe = f }

var _ chunkstore.Getter = (*Tiered)(nil)

// New returns the origins as one getter, asked in order (log: nil discards).
func New(tiers []chunkstore.Getter, log *slog.Logger) *Tiered {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tiered{tiers: tiers, stats: make([]Counters, len(tiers)), log: log}
}

// Len returns the number of origins.
func (t *Tiered) Len() int { return len(t.tiers) }

// Tier returns origin i.
func (t *Tiered) Tier(i int) chunkstore.Getter { return t.tiers[i] }

// Counters returns origin i's counters (for an origin's own events, e.g. Glance's range reads).
func (t *Tiered) Counters(i int) *Counters { return &t.stats[i] }

func (t *Tiered) String() string {
	s := "tiers("
	for i, o := range t.tiers {
		if i > 0 {
			s += ", "
		}
		s += o.String()
	}
	return s + ")"
}

// GetChunk returns chunk d from the first origin that has good bytes.
func (t *Tiered) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	ch, _, err := t.GetChunkFrom(ctx, d)
	return ch, err
}

// GetChunkFrom is GetChunk that also says which origin served the chunk. An origin that
// misses, fails or serves bad bytes is counted and logged, and the next one is asked; the
// error names every origin's answer (chunkstore.ErrNotFound with no origin at all).
func (t *Tiered) GetChunkFrom(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, int, error) {
	if len(t.tiers) == 0 {
		return nil, -1, fmt.Errorf("chunk %s: not in the local state and no origin configured: %w", d.Short(), chunkstore.ErrNotFound)
	}
	var errs []error
	for i, o := range t.tiers {
		start := time.Now()
		ch, err := o.GetChunk(ctx, d)
		if t.observe != nil {
			t.observe(i, time.Since(start), err)
		}
		st := &t.stats[i]
		if err == nil {
			st.Fetches.Add(1)
			st.Bytes.Add(int64(len(ch.Data())))
			return ch, i, nil
		}
		switch {
		case chunkstore.IsCorrupt(err):
			st.Corrupt.Add(1)
			t.log.Error("origin served a corrupt chunk", "chunk", d.String(), "origin", o.String(), "err", err)
		case chunkstore.IsNotFound(err):
			st.Misses.Add(1) // for the tier's hit ratio
		default:
			st.Errors.Add(1)
			t.log.Warn("origin fetch failed", "chunk", d.String(), "origin", o.String(), "err", err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", o, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, -1, fmt.Errorf("chunk %s: no origin gave good bytes: %w", d.Short(), errors.Join(errs...))
}

// GetManifest returns manifest d from the first origin that has a good one.
func (t *Tiered) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	m, _, err := t.GetManifestFrom(ctx, d)
	return m, err
}

// GetManifestFrom is GetManifest that also says which origin served it. When every origin
// answers not found, the error wraps chunkstore.ErrNotFound.
func (t *Tiered) GetManifestFrom(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, int, error) {
	if len(t.tiers) == 0 {
		return nil, -1, fmt.Errorf("image %s: not in the local state and no origin configured: %w", d, chunkstore.ErrNotFound)
	}
	var errs []error
	allNotFound := true
	for i, o := range t.tiers {
		m, err := o.GetManifest(ctx, d)
		if err == nil {
			t.stats[i].Manifests.Add(1)
			return m, i, nil
		}
		switch {
		case chunkstore.IsCorrupt(err) || errors.Is(err, chunkstore.ErrManifest):
			t.stats[i].Corrupt.Add(1)
			t.log.Warn("origin served a bad manifest", "image", d.String(), "origin", o.String(), "err", err)
		case !chunkstore.IsNotFound(err):
			t.stats[i].Errors.Add(1)
		}
		if !chunkstore.IsNotFound(err) {
			allNotFound = false
		}
		errs = append(errs, fmt.Errorf("%s: %w", o, err))
	}
	if allNotFound {
		return nil, -1, fmt.Errorf("image %s: unknown to the local state and every origin: %w", d, chunkstore.ErrNotFound)
	}
	return nil, -1, fmt.Errorf("image %s: no origin has a good manifest: %w", d, errors.Join(errs...))
}

// HasChunk reports whether some origin holds chunk d (a failing origin counts as not).
func (t *Tiered) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	for _, o := range t.tiers {
		if ok, err := o.HasChunk(ctx, d); err == nil && ok {
			return true, nil
		}
	}
	return false, nil
}

// HasManifest reports whether some origin holds manifest d.
func (t *Tiered) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	for _, o := range t.tiers {
		if ok, err := o.HasManifest(ctx, d); err == nil && ok {
			return true, nil
		}
	}
	return false, nil
}

// Snapshot is one origin's counters at a point in time.
type Snapshot struct {
	Origin    string `json:"origin"`
	Fetches   int64  `json:"fetches"`
	Bytes     int64  `json:"bytes"`
	Corrupt   int64  `json:"corrupt"`
	Errors    int64  `json:"errors"`
	Misses    int64  `json:"misses"` // chunks asked for that it does not hold
	Manifests int64  `json:"manifests"`
	// HitRatio is the share of the chunks asked of this origin that it served:
	// fetches / (fetches + misses + corrupt + errors); 0 when it was never asked.
	HitRatio float64 `json:"hit_ratio"`
}

// Each calls f with every origin's name and its live counters, in order (the daemon keeps
// them across processes).
func (t *Tiered) Each(f func(name string, c *Counters)) {
	for i, o := range t.tiers {
		f(o.String(), &t.stats[i])
	}
}

// Snapshots returns every origin's counters, in order.
func (t *Tiered) Snapshots() []Snapshot {
	out := make([]Snapshot, len(t.tiers))
	for i, o := range t.tiers {
		c := &t.stats[i]
		s := Snapshot{Origin: o.String(), Fetches: c.Fetches.Load(), Bytes: c.Bytes.Load(), Corrupt: c.Corrupt.Load(),
			Errors: c.Errors.Load(), Misses: c.Misses.Load(), Manifests: c.Manifests.Load()}
		if asked := s.Fetches + s.Misses + s.Corrupt + s.Errors; asked > 0 {
			s.HitRatio = float64(s.Fetches) / float64(asked)
		}
		out[i] = s
	}
	return out
}
