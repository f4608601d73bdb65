package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs/names"
)

// basefs prefetch: a whole image fetched in the background (cache.Manager.Prefetch), and the
// progress of an image's fill, waited on until it ends.

func (s *Server) prefetch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v, ok := names.Parse(name)
	if !ok || v.ViewGiB != 0 {
		reply(w, http.StatusBadRequest, control.ErrorReply{Error: fmt.Sprintf("prefetch %q: not an image name (a 64-hex digest or nova's 40-hex name)", name)})
		return
	}
	m := s.readyManager(w)
	if m == nil {
		return
	}
	resolve := s.Resolve
	if resolve == nil {
		resolve = func(_ context.Context, ref string) (chunkstore.Digest, bool, error) {
			d, err := chunkstore.ParseDigest(ref)
			return d, err == nil, nil
		}
	}
	d, ok, err := resolve(r.Context(), v.Ref)
	switch {
	case err != nil && !chunkstore.IsNotFound(err):
		reply(w, http.StatusBadGateway, control.ErrorReply{Error: fmt.Sprintf("prefetch %s: %v", name, err)})
		return
	case err != nil || !ok:
		reply(w, http.StatusNotFound, control.ErrorReply{Error: fmt.Sprintf("prefetch %s: no such image here or in the origins", name)})
		return
	}
	info, _, err := m.Prefetch(r.Context(), d)
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case chunkstore.IsNotFound(err):
			code = http.StatusNotFound
		case errors.Is(err, cache.ErrPrefetchOff):
			code = http.StatusConflict
		}
		reply(w, code, control.ErrorReply{Error: err.Error()})
		return
	}
	reply(w, http.StatusOK, info)
}

func (s *Server) fill(w http.ResponseWriter, r *http.Request) {
	d, err := chunkstore.ParseDigest(r.PathValue("digest"))
	if err != nil {
		reply(w, http.StatusBadRequest, control.ErrorReply{Error: err.Error()})
		return
	}
	m := s.readyManager(w)
	if m == nil {
		return
	}
	info, done, ok := m.Fill(d)
	if !ok {
		reply(w, http.StatusNotFound, control.ErrorReply{Error: fmt.Sprintf("image %s: no fill in this daemon process", d)})
		return
	}
	if r.URL.Query().Get("wait") == "1" {
		select {
		case <-done:
			info, _, _ = m.Fill(d)
		case <-r.Context().Done():
			return
		}
	}
	reply(w, http.StatusOK, info)
}
