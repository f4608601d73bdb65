package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/daemon/control"
)

// Server answers the control API (package control) for one serving process. The daemon
// builds it whole (New) before it serves: no request ever finds a part missing.
type Server struct {
	Version    string // of the serving binary
	Mountpoint string
	Origins    []string
	Log        *slog.Logger
	Cache      *cache.Cache   // nil: only the profiles and restart are answered (tests)
	Manager    *cache.Manager // answers gc, scrub, prefetch and fills (nil: 503)
	// Glance reports how Glance is reached (nil: not configured).
	Glance func() *control.GlanceState
	// Writable counts the writable area (nil: none).
	Writable func() (files int, bytes int64)
	// Refusals lists the images inspection refused (nil: none recorded).
	Refusals *inspect.Refusals
	// Peers reports the peer tier (nil: off).
	Peers func() *control.PeerState
	// EnsureGlance makes Glance image id usable (nil: no Glance integration).
	EnsureGlance func(ctx context.Context, id string) (*cache.Image, error)
	// Owner is the uid that may use the socket besides root (peer.go; 0: root only).
	Owner uint32
	// Resolve maps a name in the mount (a digest, nova's name) to the image's name in the
	// cache, as the file system does (nil: digests only).
	Resolve func(ctx context.Context, name string) (chunkstore.Digest, bool, error)
	// Restarts is the supervisor's restart desk (restart.go; empty: this process has no
	// supervisor, restart is refused).
	Restarts string
}

func (s *Server) gc(w http.ResponseWriter, r *http.Request) {
	m := s.readyManager(w)
	if m == nil {
		return
	}
	rep, err := m.GC(r.Context(), r.URL.Query().Get("dry_run") == "1")
	if err != nil {
		reply(w, http.StatusInternalServerError, control.ErrorReply{Error: err.Error()})
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
		reply(w, http.StatusInternalServerError, control.ErrorReply{Error: err.Error()})
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

// readyManager returns the manager, or answers 503 and nil.
func (s *Server) readyManager(w http.ResponseWriter) *cache.Manager {
	if s.Manager == nil {
		reply(w, http.StatusServiceUnavailable, control.ErrorReply{Error: "this basefs process has no cache manager"})
	}
	return s.Manager
}

func (s *Server) ready(w http.ResponseWriter) *cache.Cache {
	if s.Cache == nil {
		reply(w, http.StatusServiceUnavailable, control.ErrorReply{Error: "this basefs process has no cache"})
	}
	return s.Cache
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
	mux.HandleFunc("POST /v1/restart", s.restart)
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
		reply(w, http.StatusInternalServerError, control.ErrorReply{Error: err.Error()})
		return
	}
	if imgs == nil {
		imgs = []cache.ImageInfo{}
	}
	st := control.Status{
		State: c.Local().Root(), Mountpoint: s.Mountpoint, PID: os.Getpid(), Version: s.Version,
		Origins: s.Origins, Images: imgs, Stats: c.Stats(),
	}
	if m := s.Manager; m != nil {
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
		st.Writable = &control.WritableState{Files: n, Bytes: b}
	}
	reply(w, http.StatusOK, st)
}

func (s *Server) ensure(w http.ResponseWriter, r *http.Request) {
	d, err := chunkstore.ParseDigest(r.PathValue("digest"))
	if err != nil {
		reply(w, http.StatusBadRequest, control.ErrorReply{Error: err.Error()})
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
		reply(w, code, control.ErrorReply{Error: err.Error()})
		return
	}
	reply(w, http.StatusOK, control.ImageStatus{Digest: d, Size: im.Size()})
}

func (s *Server) ensureGlance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := glanceref.ValidateID(id); err != nil {
		reply(w, http.StatusBadRequest, control.ErrorReply{Error: err.Error()})
		return
	}
	if s.ready(w) == nil {
		return
	}
	if s.EnsureGlance == nil {
		reply(w, http.StatusBadGateway, control.ErrorReply{Error: "no Glance configured for this daemon: start `basefs mount` with --glance-endpoint URL or OS_CLOUD / OS_* (Keystone)"})
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
		reply(w, code, control.ErrorReply{Error: err.Error()})
		return
	}
	st := control.GlanceStatus{GlanceID: id, Name: glanceref.NovaName(id), Size: im.Size(), Provisional: im.Lazy()}
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
