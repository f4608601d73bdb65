// Package control is the basefs daemon's control API as its clients see it: the wire types
// and the client. The API is JSON over HTTP on a unix socket in the state directory, served
// by package daemon; `basefs status`, `basefs restart`, the agent and the benchmarks use it
// through Client. A client finds the socket from the mount point alone: the mount's root
// carries it in the extended attribute user.basefs.control (SocketFromMount).
//
// This package is a leaf: it imports the chunkstore vocabulary and the cache's report types
// (cache/report), never the cache, the file system or the daemon, so whoever only talks to
// a daemon does not link one.
//
//	GET  /v1/status                  → Status
//	POST /v1/images/<digest>/ensure  → ImageStatus (fetches the manifest from an origin if needed)
//	POST /v1/glance/<id>/ensure      → GlanceStatus (the daemon makes Glance image <id> usable)
//	POST /v1/gc[?dry_run=1]          → report.GCReport (cleanup after the minimum age, capacity)
//	POST /v1/scrub                   → report.ScrubReport (re-verify every local chunk now, repair)
//	POST /v1/prefetch/<name>         → report.FillInfo (fetch the whole image in the background;
//	                                   <name>: a digest or nova's name)
//	GET  /v1/fills/<digest>[?wait=1] → report.FillInfo (the image's last fill; wait: when it ends)
//	POST /v1/restart                 → Restarted (root only: the supervisor hands the connection to
//	                                   a new serving process and answers when it has, or why not)
//	GET  /debug/pprof/…              → Go's runtime profiles of the serving process
//
// Every answer other than 200 carries ErrorReply.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// SocketName is the control socket's name inside the state directory.
const SocketName = "control.sock"

// Xattr is the mount root's extended attribute naming the control socket; the file system
// serves it as fs/names.ControlXattr (package daemon's tests hold the two equal).
const Xattr = "user.basefs.control"

// Status is the daemon's state and counters.
type Status struct {
	State      string               `json:"state"`
	Mountpoint string               `json:"mountpoint"`
	PID        int                  `json:"pid"`
	Version    string               `json:"version"`
	Origins    []string             `json:"origins"`
	Images     []report.ImageInfo   `json:"images"`
	Stats      report.StatsSnapshot `json:"stats"`
	Manager    *report.ManagerStats `json:"manager,omitempty"`
	Fills      []report.FillInfo    `json:"fills,omitempty"` // background fills of this process, by image
	Glance     *GlanceState         `json:"glance,omitempty"`
	Writable   *WritableState       `json:"writable,omitempty"`
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
	Corrupt     int64 `json:"corrupt"`      // chunks and manifests peers sent that failed verification (refused)
	AskFailed   int64 `json:"ask_failed"`   // requests to peers that failed (dead, stalled)
	// Manifests: manifests this host took from peers; ServedManifests: sent to peers.
	Manifests       int64 `json:"manifests"`
	ServedManifests int64 `json:"served_manifests"`
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

// Restarted answers a restart: the serving process before and after, and how long the
// handover took.
type Restarted struct {
	OldPID  int     `json:"old_pid"`
	PID     int     `json:"pid"`
	Version string  `json:"version"`
	Seconds float64 `json:"seconds"`
}

// ErrorReply is the body of every answer but 200: what failed and what to do.
type ErrorReply struct {
	Error string `json:"error"`
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
	var ae ErrorReply
	json.Unmarshal(body, &ae)
	msg := ae.Error
	if msg == "" {
		msg = strings.TrimSpace(string(bytes.TrimSpace(body)))
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, &notFoundError{msg}
	case http.StatusNotImplemented:
		return nil, fmt.Errorf("%s: %w", msg, ErrUnsupported)
	}
	return nil, errors.New(msg)
}

// ErrUnsupported is what a daemon answers for a request it cannot serve at all (a daemon of
// an older basefs: its serving process or its supervisor predates the request).
var ErrUnsupported = errors.New("not supported by this basefs daemon")

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
func (c *Client) GC(ctx context.Context, dry bool) (*report.GCReport, error) {
	var rep report.GCReport
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
func (c *Client) Scrub(ctx context.Context) (*report.ScrubReport, error) {
	var rep report.ScrubReport
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

// Restart asks the daemon's supervisor to hand the FUSE connection to a new serving process
// (the basefs binary installed now: an upgrade) and to retire the current one. It returns
// when the handover has finished, with the new process, or with the reason it failed (the
// old process then keeps serving). Only root may ask. A daemon of an older basefs, which
// restarts only on SIGHUP, answers ErrUnsupported.
func (c *Client) Restart(ctx context.Context) (*Restarted, error) {
	var r Restarted
	err := c.do(ctx, http.MethodPost, "/v1/restart", &r)
	if chunkstore.IsNotFound(err) { // no such path: a serving process before this API
		err = fmt.Errorf("%v: %w", err, ErrUnsupported)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
