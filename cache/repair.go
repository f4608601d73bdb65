package cache

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/basefs/basefs/chunkstore"
)

// Repair has one owner, this file, whoever finds the damage — a read of a whole local chunk
// (loadChunk), a read of some of its sub-blocks (readChunkAt) or scrub: the chunk is moved to
// <state>/quarantine and everything derived from it forgotten, fetched again, and the repair
// counted and logged; if no origin gives good bytes that is logged and the caller's read
// fails — wrong bytes are never returned (desync's RepairableCache is the same wrapper).

// repair handles local chunk d found corrupt (cause) outside d's flight: it gets d again
// through Chunk, so however many readers found the damage, d is fetched once.
func (c *Cache) repair(ctx context.Context, d chunkstore.Digest, cause error) (*chunkstore.Chunk, error) {
	return c.repairWith(ctx, d, cause, c.Chunk)
}

// repairInFlight is repair from inside d's flight (loadChunk), which fetches d itself.
func (c *Cache) repairInFlight(ctx context.Context, d chunkstore.Digest, cause error) (*chunkstore.Chunk, error) {
	return c.repairWith(ctx, d, cause, c.fetchChunk)
}

func (c *Cache) repairWith(ctx context.Context, d chunkstore.Digest, cause error, again func(context.Context, chunkstore.Digest) (*chunkstore.Chunk, error)) (*chunkstore.Chunk, error) {
	if err := c.quarantine(d, cause); err != nil {
		return nil, err
	}
	ch, err := again(ctx, d)
	if err != nil {
		c.log.Error("corrupt local chunk not repaired: no origin gave good bytes", "chunk", d.String(), "err", err)
		return nil, err
	}
	c.stats.repairs.Add(1)
	c.log.Info("chunk repaired from origin", "chunk", d.String())
	return ch, nil
}

// quarantine moves a local chunk that failed verification aside, counts and logs it, and
// forgets everything derived from it.
func (c *Cache) quarantine(d chunkstore.Digest, cause error) error {
	c.stats.localCorrupt.Add(1)
	c.mem.remove(d)
	c.subs.remove(d)
	c.fds.drop(d)
	q, err := c.local.QuarantineChunk(d, c.QuarantineDir())
	c.log.Error("local chunk failed verification; quarantined, fetching again",
		"chunk", d.String(), "err", cause, "quarantine", q, "quarantine_err", err)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("chunk %s: corrupt and cannot be quarantined: %w", d.Short(), err)
	}
	return nil
}
