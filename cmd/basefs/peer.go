package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache/control"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
	"github.com/basefs/basefs/chunkstore/peer"
)

// peerOptions configure the peer tier (package chunkstore/peer): off unless --peer-addr is set.
type peerOptions struct {
	addr       string
	gossipPort int
	join       []string
	secretFile string
	timeout    time.Duration
	owners     int
}

func (o *peerOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.addr, "peer-addr", "", "`IP:PORT` this host's peer server listens on and the others reach: turns the peer tier on, asked before every --origin (empty: off)")
	f.IntVar(&o.gossipPort, "peer-gossip-port", 7946, "memberlist port (UDP and TCP) on --peer-addr's IP")
	f.StringArrayVar(&o.join, "peer-join", nil, "`IP:PORT` gossip address of a fleet member to join (repeatable; retried until one answers)")
	f.StringVar(&o.secretFile, "peer-secret-file", "", "file holding the fleet secret (at least 16 bytes, the same on every host): keys the gossip and authenticates every peer request")
	f.DurationVar(&o.timeout, "peer-timeout", 2*time.Second, "bound on one chunk request to one peer; then the next owner, then the next origin")
	f.IntVar(&o.owners, "peer-owners", 2, "ranked owners asked for a chunk before the next origin")
}

func (o *peerOptions) on() bool { return o.addr != "" }

// validate refuses settings that mean nothing; a peer setting without --peer-addr is an error,
// not ignored.
func (o *peerOptions) validate() error {
	if !o.on() {
		if o.secretFile != "" || len(o.join) > 0 {
			return usageError{Msg: "--peer-join and --peer-secret-file need --peer-addr (the peer tier is off without it)"}
		}
		return nil
	}
	if host, _, err := net.SplitHostPort(o.addr); err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
		return usageError{Msg: fmt.Sprintf("--peer-addr %q: want IP:PORT with a concrete IP the other hosts reach (it is advertised to them)", o.addr)}
	}
	if o.secretFile == "" {
		return usageError{Msg: "--peer-addr needs --peer-secret-file: only fleet members may read a host's peer port"}
	}
	if o.timeout <= 0 || o.owners < 1 || o.gossipPort < 0 || o.gossipPort > 65535 {
		return usageError{Msg: fmt.Sprintf("--peer-timeout %s, --peer-owners %d, --peer-gossip-port %d: want a positive timeout, at least 1 owner and a port", o.timeout, o.owners, o.gossipPort)}
	}
	_, err := o.secret()
	return err
}

func (o *peerOptions) secret() ([]byte, error) {
	st, err := os.Stat(o.secretFile)
	if err != nil {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file: %v", err)}
	}
	if st.Size() > 4096 {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file %s: %d bytes, more than 4096: not a secret file", o.secretFile, st.Size())}
	}
	b, err := os.ReadFile(o.secretFile)
	if err != nil {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file: %v", err)}
	}
	if len(b) < peer.MinSecret {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file %s: %d bytes; at least %d are needed", o.secretFile, len(b), peer.MinSecret)}
	}
	return b, nil
}

// peerOrigin is the peer tier as an origin of the serving process: "not here" until its node
// runs. A serving process that takes over from another (basefs restart) finds the peer ports
// still held by the one it replaces: it starts its node as soon as they are free.
type peerOrigin struct {
	node  atomic.Pointer[peer.Node]
	ready chan struct{} // closed once node is set
}

var _ chunkstore.Getter = (*peerOrigin)(nil)

// startPeers starts the node now if it can, else retries each second in the background until
// ctx ends; source serves the peers (the cache's verified chunks). The returned function stops
// the node.
func (o *peerOptions) startPeers(ctx context.Context, log *slog.Logger, source peer.Source) (*peerOrigin, func(), error) {
	s, err := o.secret()
	if err != nil {
		return nil, nil, err
	}
	cfg := peer.Config{Addr: o.addr, GossipPort: o.gossipPort, Join: o.join, Secret: s,
		Timeout: o.timeout, Owners: o.owners, Log: log.With("part", "peers")}
	po := &peerOrigin{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for attempt := 0; ; attempt++ {
			n, err := peer.Start(cfg)
			if err == nil {
				n.SetSource(source)
				po.node.Store(n)
				close(po.ready)
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
	return po, func() { cancel(); <-done }, nil
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

func (p *peerOrigin) GetManifest(_ context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	return nil, fmt.Errorf("image %s: peers serve no manifests: %w", d.Short(), chunkstore.ErrNotFound)
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
		Refused: c.Refused.Load(), Failed: c.Failed.Load(), Corrupt: c.Corrupt.Load(), AskFailed: c.AskFailed.Load()}
}
