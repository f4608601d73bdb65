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

// The peer protocol is two requests: GET /chunks/<64 hex> answers 200 with the chunk's stored
// object (chunkstore's encoding), GET /manifests/<64 hex> 200 with the manifest's canonical
// encoding (the bytes its digest names); 401 to a request that is not authenticated, 404 when
// this host cannot get it, 503 before the host serves.

const (
	chunksPrefix    = "/chunks/"
	manifestsPrefix = "/manifests/"
)

func chunkPath(d chunkstore.Digest) string    { return chunksPrefix + d.String() }
func manifestPath(d chunkstore.Digest) string { return manifestsPrefix + d.String() }

// ServeHTTP is the peer server.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := check(n.httpKey, r, time.Now()); err != nil {
		n.stats.Refused.Add(1)
		n.log.Warn("peer request refused", "from", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	hexd, isChunk := strings.CutPrefix(r.URL.Path, chunksPrefix)
	if !isChunk {
		var ok bool
		if hexd, ok = strings.CutPrefix(r.URL.Path, manifestsPrefix); !ok {
			hexd = ""
		}
	}
	if r.Method != http.MethodGet || hexd == "" {
		http.Error(w, "want GET /chunks/DIGEST or /manifests/DIGEST", http.StatusNotFound)
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
	var body []byte
	var bytes int64
	if isChunk {
		ch, err := src.Chunk(ctx, d)
		if err != nil {
			n.stats.Failed.Add(1)
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		body, bytes = chunkstore.AppendObject(nil, ch.Data()), int64(len(ch.Data()))
	} else {
		body, err = n.manifestBytes(ctx, src, d)
		if err != nil {
			n.stats.Failed.Add(1)
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := w.Write(body); err == nil {
		if isChunk {
			n.stats.Served.Add(1)
			n.stats.ServedBytes.Add(bytes)
		} else {
			n.stats.ServedManifests.Add(1)
		}
	}
}

// manifestBytes returns manifest d's encoding from the host's source (its copy, as the cache
// verified it; the asker checks it against d all the same).
func (n *Node) manifestBytes(ctx context.Context, src *Sources, d chunkstore.Digest) ([]byte, error) {
	if src.Manifest == nil {
		return nil, fmt.Errorf("image %s: this host serves no manifests", d.Short())
	}
	m, err := src.Manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	return m.Encode()
}

// get asks member m for path once, within the timeout, and returns at most limit bytes of
// its answer and the URL asked.
func (n *Node) get(ctx context.Context, m member, path string, limit int64) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	u := "http://" + m.addr + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, u, err
	}
	sign(n.httpKey, req, time.Now())
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, u, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, u, fmt.Errorf("HTTP %s: %w", resp.Status, chunkstore.ErrNotFound)
	default:
		return nil, u, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := httpx.ReadBody(resp.Body, resp.ContentLength, limit)
	return body, u, err
}

// fetch asks member m for chunk d and verifies what it sends.
func (n *Node) fetch(ctx context.Context, m member, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	body, u, err := n.get(ctx, m, chunkPath(d), chunkstore.MaxChunkObjectSize)
	if err != nil {
		return nil, fmt.Errorf("peer %s: chunk %s: %w", m.name, d.Short(), err)
	}
	return chunkstore.DecodeChunk(d, body, u)
}

// fetchManifest asks member m for manifest d (at most MaxManifest bytes) and accepts it only
// if it hashes to d.
func (n *Node) fetchManifest(ctx context.Context, m member, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	body, u, err := n.get(ctx, m, manifestPath(d), n.cfg.MaxManifest)
	if err != nil {
		return nil, fmt.Errorf("peer %s: manifest %s: %w", m.name, d.Short(), err)
	}
	mf, _, err := chunkstore.FetchedManifest(d, body, u)
	return mf, err
}
