package glance

import (
	"context"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/glance/glanceref"
)

// A name looked up while a listing is under way (the one Run starts with the daemon, or
// another miss's) waits for that listing, which lists it, instead of being answered unknown
// from the map of before: a nova name opened at a daemon's start on a slow Glance resolved
// as absent (an open of nova's name failed in a boot storm).
func TestCatalogLookupDuringListing(t *testing.T) {
	ctx := context.Background()
	c, id, _ := rawImage(t, 5, 64<<10, 0)
	started, release := make(chan struct{}), make(chan struct{})
	gated := func(ctx context.Context) ([]string, error) {
		close(started)
		<-release // Glance answers slowly
		return c.ListIDs(ctx)
	}
	cat := NewCatalog(gated, time.Hour)
	go cat.Refresh(ctx)
	<-started
	type answer struct {
		id  string
		ok  bool
		err error
	}
	got := make(chan answer, 1)
	go func() {
		id, ok, err := cat.Lookup(ctx, glanceref.NovaName(id))
		got <- answer{id, ok, err}
	}()
	select {
	case a := <-got:
		t.Fatalf("lookup during a listing answered before the listing did: %q %v %v", a.id, a.ok, a.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case a := <-got:
		if !a.ok || a.id != id || a.err != nil {
			t.Fatalf("lookup during a listing: %q %v %v, want %s", a.id, a.ok, a.err, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lookup did not return after the listing ended")
	}
	if n := cat.Stats().Listings; n != 1 {
		t.Fatalf("%d listings, want the one under way shared", n)
	}

	// A lookup that stops waiting (its context ends) says so; the listing goes on for others.
	slow := make(chan struct{})
	cat2 := NewCatalog(func(ctx context.Context) ([]string, error) { <-slow; return c.ListIDs(ctx) }, time.Hour)
	go cat2.Refresh(ctx)
	for cat2.Stats().Listings == 0 {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, ok, err := cat2.Lookup(short, glanceref.NovaName(id)); ok || err == nil {
		t.Fatalf("lookup whose context ended during a listing: %v %v, want an error", ok, err)
	}
	close(slow)
	if got, ok, err := cat2.Lookup(ctx, glanceref.NovaName(id)); !ok || got != id || err != nil {
		t.Fatalf("lookup after the listing: %q %v %v", got, ok, err)
	}
}
