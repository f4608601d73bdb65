package glance

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sync/singleflight"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// MaxListed bounds a listing (ids held in memory); listTimeout bounds one whole listing, in
// request timeouts.
const (
	MaxListed   = 1 << 20
	listTimeout = 5
)

// ListIDs lists the ids of every image the credentials can see: all visibilities (public,
// private, shared whatever its member status, community), every page.
func (c *Client) ListIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.retry(ctx, "list images", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, listTimeout*c.opts.RequestTimeout)
		defer cancel()
		ids = ids[:0]
		opts := images.ListOpts{Visibility: images.ImageVisibility("all"), MemberStatus: images.ImageMemberStatus("all"), Limit: 1000}
		return images.List(c.sc, opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			l, err := images.ExtractImages(p)
			if err != nil {
				return false, err
			}
			if len(ids)+len(l) > MaxListed {
				return false, fmt.Errorf("%w: the listing has more than %d images (the most basefs lists)", ErrUnusable, MaxListed)
			}
			for _, im := range l {
				ids = append(ids, im.ID)
			}
			return true, nil
		})
	})
	return ids, err
}

// Catalog maps nova's names of Glance images (NovaName: the hex SHA-1 of the id) to their ids,
// from Glance's listing: every image the credentials can see is known under nova's name
// before any of its bytes is fetched. A name it does not know triggers a new listing, at
// most once every MinInterval however many lookups miss at once (one listing serves them
// all); between listings such a name is answered as unknown. A lookup that misses while a
// listing is under way waits for that listing (its answer is the newest there is).
type Catalog struct {
	list        func(context.Context) ([]string, error)
	minInterval time.Duration

	flight singleflight.Group
	mu     sync.Mutex
	byName map[string]string
	last   time.Time // when the last listing started
	err    error     // of the last listing (nil: it succeeded)
	when   time.Time // when the last listing ended
	// inflight is closed when the listing under way ends (nil: none is).
	inflight chan struct{}

	listings atomic.Int64
}

// NewCatalog returns a catalog over list (Client.ListIDs); minInterval bounds how often a
// miss lists again (0: every miss lists, shared by concurrent misses).
func NewCatalog(list func(context.Context) ([]string, error), minInterval time.Duration) *Catalog {
	return &Catalog{list: list, minInterval: minInterval, byName: map[string]string{}}
}

// Lookup returns the Glance id whose nova name is name. ok false: Glance does not list it
// (as of a listing no older than MinInterval). err: Glance could not be listed.
func (c *Catalog) Lookup(ctx context.Context, name string) (id string, ok bool, err error) {
	c.mu.Lock()
	id, ok = c.byName[name]
	fresh := !c.last.IsZero() && time.Since(c.last) < c.minInterval
	lastErr := c.err
	inflight := c.inflight
	c.mu.Unlock()
	if ok {
		return id, true, nil
	}
	if inflight != nil {
		// Not the stale map: a listing started within MinInterval (at the daemon's start, by
		// Run, or by another miss) has not answered yet.
		select {
		case <-inflight:
		case <-ctx.Done():
			return "", false, fmt.Errorf("list Glance images: %w", ctx.Err())
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			return "", false, fmt.Errorf("list Glance images: %w", c.err)
		}
		id, ok = c.byName[name]
		return id, ok, nil
	}
	if fresh {
		return "", false, lastErr
	}
	if err := c.Refresh(ctx); err != nil {
		return "", false, err
	}
	c.mu.Lock()
	id, ok = c.byName[name]
	c.mu.Unlock()
	return id, ok, nil
}

// Refresh lists Glance now (concurrent callers share one listing).
func (c *Catalog) Refresh(ctx context.Context) error {
	_, err, _ := c.flight.Do("list", func() (any, error) {
		done := make(chan struct{})
		c.mu.Lock()
		c.last = time.Now()
		c.inflight = done
		c.mu.Unlock()
		c.listings.Add(1)
		ids, err := c.list(context.WithoutCancel(ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		defer close(done) // after the map below is in place
		c.inflight = nil
		c.when = time.Now()
		c.err = err
		if err != nil {
			return nil, fmt.Errorf("list Glance images: %w", err)
		}
		m := make(map[string]string, len(ids))
		for _, id := range ids {
			m[glanceref.NovaName(id)] = id
		}
		c.byName = m
		return nil, nil
	})
	return err
}

// Run refreshes the catalog every interval until ctx ends (interval ≤ 0: never).
func (c *Catalog) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	for {
		c.Refresh(ctx)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// CatalogStats is what the catalog tells an operator (in glanceref: the control API carries it).
type CatalogStats = glanceref.CatalogStats

// Stats returns the catalog's counters.
func (c *Catalog) Stats() CatalogStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := CatalogStats{Images: len(c.byName), Listings: c.listings.Load(), LastList: c.when}
	if c.err != nil {
		s.LastError = c.err.Error()
	}
	return s
}
