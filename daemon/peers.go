package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
	"github.com/basefs/basefs/chunkstore/peer"
	"github.com/basefs/basefs/daemon/control"
)

// peerOrigin is the peer tier as an origin of the serving process: "not here" until its node
// runs. A serving process that takes over from another (basefs restart) finds the peer ports
// still held by the one it replaces: it starts its node as soon as they are free.
type peerOrigin struct {
	cfg  peer.Config
	node atomic.Pointer[peer.Node]
}

var _ chunkstore.Getter = (*peerOrigin)(nil)

// start starts the node now if it can, else retries each second in the background until
// ctx ends; source serves the peers (the cache's verified chunks and manifests). The returned
// function stops the node.
func (p *peerOrigin) start(ctx context.Context, log *slog.Logger, source peer.Sources) (stop func()) {
	cfg := p.cfg
	cfg.Log = log.With("part", "peers")
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for attempt := 0; ; attempt++ {
			n, err := peer.Start(cfg)
			if err == nil {
				n.SetSources(source)
				p.node.Store(n)
				<-ctx.Done()
				n.Close()
				return
			}
			if attempt == 0 {
				log.Warn("peer tier not started yet (its ports may still be held by the process this one replaces); retrying each second", "err", err)
			}
			if httpx.Sleep(ctx, time.Second) != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (p *peerOrigin) String() string {
	if n := p.node.Load(); n != nil {
		return n.String()
	}
	return "peers(starting)"
}

func (p *peerOrigin) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	if n := p.node.Load(); n != nil {
		return n.GetChunk(ctx, d)
	}
	return nil, fmt.Errorf("chunk %s: the peer tier is starting: %w", d.Short(), chunkstore.ErrNotFound)
}

func (p *peerOrigin) HasChunk(context.Context, chunkstore.Digest) (bool, error) { return false, nil }

func (p *peerOrigin) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	if n := p.node.Load(); n != nil {
		return n.GetManifest(ctx, d)
	}
	return nil, fmt.Errorf("image %s: the peer tier is starting: %w", d.Short(), chunkstore.ErrNotFound)
}

func (p *peerOrigin) HasManifest(context.Context, chunkstore.Digest) (bool, error) { return false, nil }

// state is the control API's view of the peer tier.
func (p *peerOrigin) state() *control.PeerState {
	n := p.node.Load()
	if n == nil {
		return &control.PeerState{}
	}
	c := n.Stats()
	return &control.PeerState{Members: n.Members(), Served: c.Served.Load(), ServedBytes: c.ServedBytes.Load(),
		Refused: c.Refused.Load(), Failed: c.Failed.Load(), Corrupt: c.Corrupt.Load(), AskFailed: c.AskFailed.Load(),
		Manifests: c.Manifests.Load(), ServedManifests: c.ServedManifests.Load()}
}

// manifestForPeer serves manifest d to a peer: the host's copy, or fetched once through the
// cache from the origins behind the peers (ctx carries peer.WithoutPeers), then kept.
func (d *Daemon) manifestForPeer(ctx context.Context, digest chunkstore.Digest) (*chunkstore.Manifest, error) {
	im, err := d.cache.Image(ctx, digest)
	if err != nil {
		return nil, err
	}
	return im.Manifest(), nil
}
