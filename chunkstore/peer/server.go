package peer

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// The peer protocol is one request: GET /chunks/<64 hex> answers 200 with the chunk's stored
// object (chunkstore's encoding), 401 to a request that is not authenticated, 404 when this
// host cannot get the chunk, 503 before the host serves.

func chunkPath(d chunkstore.Digest) string { return "/chunks/" + d.String() }

// ServeHTTP is the peer server.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := check(n.httpKey, r, time.Now()); err != nil {
		n.stats.Refused.Add(1)
		n.log.Warn("peer request refused", "from", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	hexd, ok := strings.CutPrefix(r.URL.Path, "/chunks/")
	if r.Method != http.MethodGet || !ok {
		http.Error(w, "want GET /chunks/DIGEST", http.StatusNotFound)
		return
	}
	d, err := chunkstore.ParseDigest(hexd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	src := n.source.Load()
	if src == nil {
		http.Error(w, "not serving yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(WithoutPeers(r.Context()), 2*n.cfg.Timeout)
	defer cancel()
	ch, err := (*src)(ctx, d)
	if err != nil {
		n.stats.Failed.Add(1)
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	obj := chunkstore.AppendObject(nil, ch.Data())
	w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := w.Write(obj); err == nil {
		n.stats.Served.Add(1)
		n.stats.ServedBytes.Add(int64(len(ch.Data())))
	}
}

// fetch asks member m for chunk d once, within the timeout, and verifies what it sends.
func (n *Node) fetch(ctx context.Context, m member, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	u := "http://" + m.addr + chunkPath(d)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	sign(n.httpKey, req, time.Now())
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer %s: chunk %s: %w", m.name, d.Short(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("peer %s: chunk %s: HTTP %s", m.name, d.Short(), resp.Status)
	}
	body, err := httpx.ReadBody(resp.Body, resp.ContentLength, chunkstore.MaxChunkObjectSize)
	if err != nil {
		return nil, fmt.Errorf("peer %s: chunk %s: %w", m.name, d.Short(), err)
	}
	return chunkstore.DecodeChunk(d, body, u)
}
