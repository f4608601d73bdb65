// Package control is the daemon's control API: JSON over HTTP on a unix socket in the state
// directory. The server wraps a *cache.Cache; the client is what `basefs status` and the
// agent use. A client finds the socket from the mount point alone: the mount's root carries
// it in the extended attribute user.basefs.control. Only root and the daemon's owner may use
// it: Listen creates it 0600, and every connection's peer is checked (SO_PEERCRED, peer.go).
//
//	GET  /v1/status                  → Status
//	POST /v1/images/<digest>/ensure  → ImageStatus (fetches the manifest from an origin if needed)
//	POST /v1/glance/<id>/ensure      → GlanceStatus (the daemon makes Glance image <id> usable)
//	POST /v1/gc[?dry_run=1]          → cache.GCReport (cleanup after the minimum age, capacity)
//	POST /v1/scrub                   → cache.ScrubReport (re-verify every local chunk now, repair)
//	POST /v1/prefetch/<name>         → cache.FillInfo (fetch the whole image in the background;
//	                                   <name>: a digest or nova's name)
//	GET  /v1/fills/<digest>[?wait=1] → cache.FillInfo (the image's last fill; wait: when it ends)
//	GET  /debug/pprof/…              → Go's runtime profiles of the serving process (pprof.go)
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/fs/names"
)

// SocketName is the control socket's name inside the state directory.
const SocketName = "control.sock"

// Xattr is the mount root's extended attribute naming the control socket.
const Xattr = names.ControlXattr

// Status is the daemon's state and counters.
type Status struct {
	State      string              `json:"state"`
	Mountpoint string              `json:"mountpoint"`
	PID        int                 `json:"pid"`
	Version    string              `json:"version"`
	Origins    []string            `json:"origins"`
	Images     []cache.ImageInfo   `json:"images"`
	Stats      cache.StatsSnapshot `json:"stats"`
	Manager    *cache.ManagerStats `json:"manager,omitempty"`
	Fills      []cache.FillInfo    `json:"fills,omitempty"` // background fills of this process, by image
	Glance     *GlanceState        `json:"glance,omitempty"`
	Writable   *WritableState      `json:"writable,omitempty"`
	// Refused lists the images inspection refused lately, each with why (issue 23).
	Refused []inspect.Refused `json:"refused,omitempty"`
	Peers   *PeerState        `json:"peers,omitempty"`
}

// PeerState is the peer tier as this host sees it: live members (itself included) and what it
// served to them (what it read from them is its peer origin's counters in Stats.Origins).
type PeerState struct {
	Members     int   `json:"members"`
	Served      int64 `json:"served"`       // chunks sent to peers
	ServedBytes int64 `json:"served_bytes"` // their uncompressed bytes
	Refused     int64 `json:"refused"`      // requests refused as not authenticated
	Failed      int64 `json:"failed"`       // requests this host could not serve
	Corrupt     int64 `json:"corrupt"`      // chunks peers sent that failed verification (refused)
	AskFailed   int64 `json:"ask_failed"`   // requests to peers that failed (dead, stalled)
}

// GlanceState tells how the daemon reaches Glance: the error that keeps it from doing so
// (bad credentials, Keystone or Glance down), and the listing of nova's names.
type GlanceState struct {
	Error   string                  `json:"error,omitempty"`
	Catalog *glanceref.CatalogStats `json:"catalog,omitempty"`
	Layer   *glanceref.LayerStats   `json:"images,omitempty"`
}

// WritableState counts the writable area's plain files (nova's ephemeral, swap, downloads).
type WritableState struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"` // allocated on local disk
}

// ImageStatus answers ensure.
type ImageStatus struct {
	Digest chunkstore.Digest `json:"digest"`
	Size   int64             `json:"size"`
}

// GlanceStatus answers a Glance ensure. Name is nova's name for the image in the mount (the
// hex SHA-1 of the Glance id), which always reads the image. Digest is its content address,
// empty while Provisional (a raw image being read lazily before its whole-image check).
type GlanceStatus struct {
	GlanceID    string             `json:"glance_id"`
	Name        string             `json:"name"`
	Digest      *chunkstore.Digest `json:"digest,omitempty"`
	Size        int64              `json:"size"`
	Provisional bool               `json:"provisional"`
}

type apiError struct {
	Error string `json:"error"`
}

// Server serves the control API for one daemon.
type Server struct {
	Version    string // of the serving binary
	Mountpoint string
	Origins    []string
	Log        *slog.Logger
	// Glance reports how Glance is reached (nil: not configured).
	Glance func() *GlanceState
	// Writable counts the writable area (nil: none).
	Writable func() (files int, bytes int64)
	// Refusals lists the images inspection refused (nil: none recorded).
	Refusals *inspect.Refusals
	// Peers reports the peer tier (nil: off).
	Peers func() *PeerState
	// EnsureGlance makes Glance image id usable (nil: no Glance integration).
	EnsureGlance func(ctx context.Context, id string) (*cache.Image, error)
	// Owner is the uid that may use the socket besides root (peer.go; 0: root only).
	Owner uint32
	// Resolve maps a name in the mount (a digest, nova's name) to the image's name in the
	// cache, as the file system does (nil: digests only).
	Resolve func(ctx context.Context, name string) (chunkstore.Digest, bool, error)

	cache   atomic.Pointer[cache.Cache] // nil until SetCache: the daemon is starting
	manager atomic.Pointer[cache.Manager]
}

// SetManager makes the server answer gc and scrub with m.
func (s *Server) SetManager(m *cache.Manager) { s.manager.Store(m) }

func (s *Server) gc(w http.ResponseWriter, r *http.Request) {
	m := s.readyManager(w)
	if m == nil {
		return
	}
	rep, err := m.GC(r.Context(), r.URL.Query().Get("dry_run") == "1")
	if err != nil {
		reply(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	reply(w, http.StatusOK, rep)
}

func (s *Server) scrub(w http.ResponseWriter, r *http.Request) {
	m := s.readyManager(w)
	if m == nil {
		return
	}
	rep, err := m.Scrub(r.Context(), 0)
	if err != nil {
		reply(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	reply(w, http.StatusOK, rep)
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// readyManager returns the manager, or answers 503 (starting) and nil.
func (s *Server) readyManager(w http.ResponseWriter) *cache.Manager {
	m := s.manager.Load()
	if m == nil {
		reply(w, http.StatusServiceUnavailable, apiError{"the basefs daemon is starting"})
	}
	return m
}

// SetCache makes the server answer from c (before it, requests get 503: starting).
func (s *Server) SetCache(c *cache.Cache) { s.cache.Store(c) }

func (s *Server) ready(w http.ResponseWriter) *cache.Cache {
	c := s.cache.Load()
	if c == nil {
		reply(w, http.StatusServiceUnavailable, apiError{"the basefs daemon is starting"})
	}
	return c
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/images/{digest}/ensure", s.ensure)
	mux.HandleFunc("POST /v1/glance/{id}/ensure", s.ensureGlance)
	mux.HandleFunc("POST /v1/gc", s.gc)
	mux.HandleFunc("POST /v1/scrub", s.scrub)
	mux.HandleFunc("POST /v1/prefetch/{name}", s.prefetch)
	mux.HandleFunc("GET /v1/fills/{digest}", s.fill)
	handleProfiles(mux)
	return mux
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	c := s.ready(w)
	if c == nil {
		return
	}
	imgs, err := cache.List(r.Context(), c.Local())
	if err != nil {
		reply(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	if imgs == nil {
		imgs = []cache.ImageInfo{}
	}
	st := Status{
		State: c.Local().Root(), Mountpoint: s.Mountpoint, PID: os.Getpid(), Version: s.Version,
		Origins: s.Origins, Images: imgs, Stats: c.Stats(),
	}
	if m := s.manager.Load(); m != nil {
		ms := m.Stats()
		st.Manager = &ms
		st.Fills = m.Fills()
	}
	if s.Glance != nil {
		st.Glance = s.Glance()
	}
	st.Refused = s.Refusals.List()
	if s.Peers != nil {
		st.Peers = s.Peers()
	}
	if s.Writable != nil {
		n, b := s.Writable()
		st.Writable = &WritableState{Files: n, Bytes: b}
	}
	reply(w, http.StatusOK, st)
}

func (s *Server) ensure(w http.ResponseWriter, r *http.Request) {
	d, err := chunkstore.ParseDigest(r.PathValue("digest"))
	if err != nil {
		reply(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	c := s.ready(w)
	if c == nil {
		return
	}
	im, err := c.Image(r.Context(), d)
	if err != nil {
		code := http.StatusBadGateway
		if chunkstore.IsNotFound(err) {
			code = http.StatusNotFound
		}
		reply(w, code, apiError{err.Error()})
		return
	}
	reply(w, http.StatusOK, ImageStatus{Digest: d, Size: im.Size()})
}

func (s *Server) ensureGlance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := glanceref.ValidateID(id); err != nil {
		reply(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	if s.ready(w) == nil {
		return
	}
	if s.EnsureGlance == nil {
		reply(w, http.StatusBadGateway, apiError{"no Glance configured for this daemon: start `basefs mount` with --glance-endpoint URL or OS_CLOUD / OS_* (Keystone)"})
		return
	}
	im, err := s.EnsureGlance(r.Context(), id)
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case chunkstore.IsNotFound(err):
			code = http.StatusNotFound
		case errors.Is(err, glanceref.ErrUnusable), errors.Is(err, inspect.ErrRefused):
			code = http.StatusUnprocessableEntity
		case errors.Is(err, glanceref.ErrHashMismatch), errors.Is(err, glanceref.ErrBadImage):
			code = http.StatusConflict
		}
		reply(w, code, apiError{err.Error()})
		return
	}
	st := GlanceStatus{GlanceID: id, Name: glanceref.NovaName(id), Size: im.Size(), Provisional: im.Lazy()}
	if !st.Provisional {
		if d, err := im.Complete(r.Context()); err == nil {
			st.Digest = &d
		}
	}
	reply(w, http.StatusOK, st)
}

// Serve answers on an existing listener (the supervisor's, shared across serving processes)
// until stop; the socket file is the listener owner's to remove.
func (s *Server) Serve(l net.Listener) (stop func()) {
	srv := &http.Server{Handler: s.allowPeers(s.Handler()), ReadHeaderTimeout: 10 * time.Second, ConnContext: withPeer}
	go srv.Serve(l)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}
}

// Client talks to a daemon's control socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{socket: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// SocketFromMount reads the control socket's path from a basefs mount point.
func SocketFromMount(mountpoint string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(mountpoint, Xattr, buf)
	if err != nil {
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return "", fmt.Errorf("%s is not a basefs mount (no %s attribute): is the daemon running? (basefs mount)", mountpoint, Xattr)
		}
		if errors.Is(err, unix.ENOTCONN) {
			return "", fmt.Errorf("%s: the basefs daemon serving it is gone (transport endpoint is not connected): restart it", mountpoint)
		}
		return "", fmt.Errorf("%s: %w", mountpoint, err)
	}
	return string(buf[:n]), nil
}

// SocketFromState returns the socket path of the daemon using a state directory.
func SocketFromState(state string) string { return filepath.Join(state, SocketName) }

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	resp, err := c.send(ctx, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("basefs daemon at %s: %w", c.socket, err)
	}
	return json.Unmarshal(body, out)
}

// send makes a request and returns the daemon's answer when it is 200 OK (the caller closes
// its body); any other answer is returned as the daemon's error.
func (c *Client) send(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://basefs"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("basefs daemon at %s: %w (is `basefs mount` running?)", c.socket, unwrapDial(err))
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("basefs daemon at %s: %w", c.socket, err)
	}
	var ae apiError
	json.Unmarshal(body, &ae)
	msg := ae.Error
	if msg == "" {
		msg = strings.TrimSpace(string(bytes.TrimSpace(body)))
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, &notFoundError{msg}
	}
	return nil, errors.New(msg)
}

// notFoundError carries the daemon's message and matches chunkstore.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == chunkstore.ErrNotFound }

func unwrapDial(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// GC runs cleanup and the capacity bound now (dry: report only).
func (c *Client) GC(ctx context.Context, dry bool) (*cache.GCReport, error) {
	var rep cache.GCReport
	path := "/v1/gc"
	if dry {
		path += "?dry_run=1"
	}
	if err := c.do(ctx, http.MethodPost, path, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Scrub re-verifies every local chunk now and repairs corrupt ones from the origins.
func (c *Client) Scrub(ctx context.Context) (*cache.ScrubReport, error) {
	var rep cache.ScrubReport
	if err := c.do(ctx, http.MethodPost, "/v1/scrub", &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// EnsureImage makes the daemon know image d (its manifest fetched from an origin if needed)
// and returns its size. An image no origin knows wraps chunkstore.ErrNotFound.
func (c *Client) EnsureImage(ctx context.Context, d chunkstore.Digest) (*ImageStatus, error) {
	var st ImageStatus
	if err := c.do(ctx, http.MethodPost, "/v1/images/"+d.String()+"/ensure", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// EnsureGlance makes the daemon serve Glance image id (manifest from an origin, lazily by
// range, or converted once) and returns its nova name, size and, once known, digest. An id
// Glance does not know wraps chunkstore.ErrNotFound.
func (c *Client) EnsureGlance(ctx context.Context, id string) (*GlanceStatus, error) {
	var st GlanceStatus
	if err := c.do(ctx, http.MethodPost, "/v1/glance/"+id+"/ensure", &st); err != nil {
		return nil, err
	}
	return &st, nil
}
