package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// Config configures a host's place in the peer tier.
type Config struct {
	// Addr is IP:PORT of this host's peer HTTP server: listened on and advertised to the others
	// (a concrete address, not 0.0.0.0).
	Addr string
	// GossipPort is the memberlist port (UDP and TCP) on Addr's IP (0: any free one).
	GossipPort int
	// Name is this host's unique member name ("" means Addr).
	Name string
	// Join lists IP:PORT gossip addresses of members to join; joining is retried in the
	// background until one answers (a fleet's hosts start in any order).
	Join []string
	// Secret is the fleet secret (at least MinSecret bytes), shared by every member.
	Secret []byte
	// Timeout bounds one chunk request to one peer (dial, its own fetch, the transfer).
	Timeout time.Duration
	// Owners is how many ranked members are asked for a chunk before the next origin (≥ 1).
	Owners int
	// MaxManifest bounds a manifest a peer sends, checked before it is read (> 0;
	// DefaultMaxManifest unless a test wants a small one).
	MaxManifest int64
	// Log receives membership changes and refused requests (nil discards).
	Log *slog.Logger
}

// DefaultMaxManifest bounds a manifest read from a peer: the shared tier's bound (a 1 PiB image
// of 4 MiB chunks has a manifest of about 17 MiB).
const DefaultMaxManifest = 64 << 20

// Source serves a chunk to a peer: the host's verified copy, fetched once through its cache if
// missing. ctx carries WithoutPeers.
type Source func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error)

// ManifestSource serves a manifest to a peer: the host's copy, fetched once through its cache
// if missing. ctx carries WithoutPeers.
type ManifestSource func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error)

// Sources is what a host serves to its peers (a nil Manifest: no manifests, 404).
type Sources struct {
	Chunk    Source
	Manifest ManifestSource
}

// Counters are a node's own counters (the bytes it read from peers are its origin's counters
// in the tier order).
type Counters struct {
	Served, ServedBytes atomic.Int64 // chunks and their uncompressed bytes sent to peers
	ServedManifests     atomic.Int64 // manifests sent to peers
	Refused             atomic.Int64 // requests refused as not authenticated
	Failed              atomic.Int64 // requests this host could not serve
	// Asking: chunks and manifests a peer sent that failed verification (refused), and
	// requests to a peer that failed (dead, stalled, refused, too large); after either the next
	// owner is asked. Manifests: those peers gave this host.
	Corrupt, AskFailed, Manifests atomic.Int64
}

// Node is a host's member of the peer tier: its memberlist, its peer server and the origin
// (chunkstore.Getter) that asks the others.
type Node struct {
	cfg       Config
	self      member
	httpKey   []byte
	list      *memberlist.Memberlist
	srv       *http.Server
	ln        net.Listener
	client    *http.Client
	source    atomic.Pointer[Sources]
	stats     Counters
	log       *slog.Logger
	stop      context.CancelFunc
	wg        sync.WaitGroup
	leaveOnce sync.Once
}

var _ chunkstore.Getter = (*Node)(nil)

// Start listens on cfg.Addr and cfg.GossipPort, starts joining cfg.Join and returns the node.
// Until SetSources it answers peers 503.
func Start(cfg Config) (*Node, error) {
	if len(cfg.Secret) < MinSecret {
		return nil, fmt.Errorf("peer tier: the fleet secret is %d bytes; at least %d are needed", len(cfg.Secret), MinSecret)
	}
	if cfg.Timeout <= 0 || cfg.Owners < 1 || cfg.MaxManifest <= 0 {
		return nil, fmt.Errorf("peer tier: timeout %s, owners %d, manifest bound %d: all must be positive", cfg.Timeout, cfg.Owners, cfg.MaxManifest)
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
		return nil, fmt.Errorf("peer tier: address %q: want IP:PORT with a concrete IP the other hosts reach", cfg.Addr)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Addr
	}
	lg := cfg.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("peer tier: listen on %s: %w", cfg.Addr, err)
	}
	n := &Node{cfg: cfg, self: newMember(cfg.Name, ln.Addr().String()), httpKey: deriveKey(cfg.Secret, "peer http"), ln: ln, log: lg}
	n.cfg.Addr = ln.Addr().String()
	n.client = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}

	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, cfg.GossipPort
	mc.SecretKey = deriveKey(cfg.Secret, "peer gossip")
	mc.Delegate = meta{n.cfg.Addr}
	mc.Events = events{lg}
	mc.Logger = log.New(io.Discard, "", 0)
	list, err := memberlist.Create(mc)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("peer tier: memberlist on %s:%d: %w", host, cfg.GossipPort, err)
	}
	n.list = list
	n.srv = &http.Server{Handler: n, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	ctx, stop := context.WithCancel(context.Background())
	n.stop = stop
	n.wg.Go(func() { n.srv.Serve(ln) })
	if len(cfg.Join) > 0 {
		n.wg.Go(func() { n.join(ctx) })
	}
	return n, nil
}

// join retries joining until a member answers or the node stops.
func (n *Node) join(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		k, err := n.list.Join(n.cfg.Join)
		if err == nil && k > 0 {
			n.log.Info("peer tier joined", "contacted", k, "members", n.list.NumMembers())
			return
		}
		if attempt == 0 {
			n.log.Info("peer tier: no member answered yet; retrying", "join", n.cfg.Join, "err", err)
		}
		if httpx.Sleep(ctx, time.Second) != nil {
			return
		}
	}
}

// SetSources sets what this host serves to peers (its cache); until then it answers 503.
func (n *Node) SetSources(s Sources) { n.source.Store(&s) }

// Addr returns the peer server's address; GossipAddr the memberlist's.
func (n *Node) Addr() string { return n.cfg.Addr }

// GossipAddr returns IP:PORT of this node's memberlist (for others' Join).
func (n *Node) GossipAddr() string {
	a := n.list.LocalNode()
	return net.JoinHostPort(a.Addr.String(), strconv.Itoa(int(a.Port)))
}

// Members returns the number of live members, this one included.
func (n *Node) Members() int { return n.list.NumMembers() }

// Stats returns the node's own counters.
func (n *Node) Stats() *Counters { return &n.stats }

// Close leaves the fleet (telling the others) and stops serving.
func (n *Node) Close() error {
	n.stop()
	n.leaveOnce.Do(func() { n.list.Leave(time.Second) })
	err := n.list.Shutdown()
	n.srv.Close()
	n.wg.Wait()
	return err
}

func (n *Node) String() string { return "peers(" + n.cfg.Name + ")" }

// members returns the live members as the ranking sees them.
func (n *Node) members() []member {
	nodes := n.list.Members()
	out := make([]member, 0, len(nodes))
	for _, m := range nodes {
		if m.Name == n.self.name {
			out = append(out, n.self)
			continue
		}
		if len(m.Meta) == 0 || len(m.Meta) > 255 {
			continue // no peer server advertised
		}
		out = append(out, newMember(m.Name, string(m.Meta)))
	}
	return out
}

type ctxKey struct{}

// WithoutPeers marks ctx so that the peer tier answers "not here" at once: a host serving a
// peer fetches from the origins behind the peers, never from peers again.
func WithoutPeers(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, true)
}

func withoutPeers(ctx context.Context) bool { v, _ := ctx.Value(ctxKey{}).(bool); return v }

var errSelf = errors.New("this host is the owner: the next origin is asked")

// GetChunk asks chunk d's owners in rank order, stopping at this host; it returns a verified
// chunk, or an error (ErrNotFound when no peer was asked) that moves the tier order on.
func (n *Node) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	var ch *chunkstore.Chunk
	err := n.ask(ctx, "chunk", d, func(m member) (err error) {
		ch, err = n.fetch(ctx, m, d)
		return err
	})
	return ch, err
}

// HasChunk answers false: peers are not a durable origin (eviction must not count on them).
func (n *Node) HasChunk(context.Context, chunkstore.Digest) (bool, error) { return false, nil }

// GetManifest asks manifest d's owners as GetChunk asks a chunk's: a manifest is accepted only
// if it hashes to d (a forged one is counted corrupt and the next owner asked).
func (n *Node) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	var mf *chunkstore.Manifest
	err := n.ask(ctx, "manifest", d, func(m member) (err error) {
		mf, err = n.fetchManifest(ctx, m, d)
		return err
	})
	if err == nil {
		n.stats.Manifests.Add(1)
	}
	return mf, err
}

// ask calls try with d's owners in rank order, stopping at this host or at the first success;
// it returns nil, or an error (ErrNotFound when no peer was asked) that moves the tier order on.
func (n *Node) ask(ctx context.Context, kind string, d chunkstore.Digest, try func(member) error) error {
	if withoutPeers(ctx) {
		return fmt.Errorf("%s %s: asked for a peer: %w", kind, d.Short(), chunkstore.ErrNotFound)
	}
	var errs []error
	for _, m := range rank(n.members(), d, n.cfg.Owners) {
		if m.name == n.self.name {
			break
		}
		err := try(m)
		if err == nil {
			return nil
		}
		if chunkstore.IsCorrupt(err) {
			n.stats.Corrupt.Add(1)
			n.log.Error("a peer sent a corrupt "+kind+": refused, asking the next owner", "peer", m.name, kind, d.String(), "err", err)
		} else {
			n.stats.AskFailed.Add(1)
			n.log.Warn("peer request failed: asking the next owner", "peer", m.name, kind, d.String(), "err", err)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("%s %s: %w (%w)", kind, d.Short(), errSelf, chunkstore.ErrNotFound)
	}
	return errors.Join(errs...)
}

// HasManifest answers false.
func (n *Node) HasManifest(context.Context, chunkstore.Digest) (bool, error) { return false, nil }

// meta advertises the peer server's address in the member's metadata.
type meta struct{ addr string }

func (m meta) NodeMeta(limit int) []byte {
	if len(m.addr) > limit {
		return nil
	}
	return []byte(m.addr)
}
func (meta) NotifyMsg([]byte)                           {}
func (meta) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (meta) LocalState(join bool) []byte                { return nil }
func (meta) MergeRemoteState(buf []byte, join bool)     {}

// events logs membership changes.
type events struct{ log *slog.Logger }

func (e events) NotifyJoin(m *memberlist.Node) { e.log.Info("peer joined", "peer", m.Name) }
func (e events) NotifyLeave(m *memberlist.Node) {
	e.log.Info("peer left or failed", "peer", m.Name)
}
func (e events) NotifyUpdate(m *memberlist.Node) {}
