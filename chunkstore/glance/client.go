package glance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore/glance/glanceref"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// ManifestProperty is the Glance image property that names the image's published manifest
// (its digest), set by `basefs publish glance://ID`.
const ManifestProperty = "basefs_manifest"

// Options configure a Client.
type Options struct {
	// Endpoint is a fixed image API endpoint (e.g. http://127.0.0.1:9292) used without
	// Keystone. Empty: Keystone, configured from OS_CLOUD (clouds.yaml) or the OS_* variables.
	Endpoint string
	// RequestTimeout bounds one metadata request or one range read (default 60 s).
	RequestTimeout time.Duration
	// StallTimeout fails a transfer that receives nothing for this long (default 20 s). Whole
	// downloads are bounded by it only: a large image may take long, but never stands still.
	StallTimeout time.Duration
	// MinRate is the slowest a range read may go, in bytes per second (default 256 KiB/s):
	// a range of n bytes must be answered within RequestTimeout + n/MinRate, so a server
	// that trickles cannot hold a guest's read for long.
	MinRate int64
	// Attempts is how many times a transient failure is tried (default 4), with exponential
	// backoff from Backoff (default 200 ms).
	Attempts int
	Backoff  time.Duration
}

// Client is a Glance image API v2 client (gophercloud). It is safe for concurrent use.
type Client struct {
	sc   *gophercloud.ServiceClient
	opts Options
	name string
}

// The errors that classify a Glance failure (package glanceref holds them, so that packages
// without a Glance client can tell them apart).
var (
	ErrUnavailable  = glanceref.ErrUnavailable
	ErrUnusable     = glanceref.ErrUnusable
	ErrHashMismatch = glanceref.ErrHashMismatch
)

// ErrAuth is wrapped by authentication and authorization failures (Keystone or Glance said
// 401/403): retrying cannot help; fix the credentials.
var ErrAuth = errors.New("glance authentication failed")

// New connects to Glance. With opts.Endpoint it talks to that endpoint without Keystone;
// otherwise it authenticates with Keystone from OS_CLOUD (clouds.yaml, as the openstack CLI
// finds it) or, without OS_CLOUD, from the OS_* environment (OS_AUTH_URL, OS_USERNAME, …) and
// finds the image endpoint in the service catalog.
func New(ctx context.Context, opts Options) (*Client, error) {
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 60 * time.Second
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = 20 * time.Second
	}
	if opts.Attempts == 0 {
		opts.Attempts = 4
	}
	if opts.MinRate == 0 {
		opts.MinRate = 256 << 10
	}
	if opts.Backoff == 0 {
		opts.Backoff = 200 * time.Millisecond
	}
	hc := http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 32,
		ResponseHeaderTimeout: opts.RequestTimeout, IdleConnTimeout: 90 * time.Second,
	}, CheckRedirect: httpx.SameOrigin("glance")} // the Keystone token goes nowhere else
	if opts.Endpoint != "" {
		u, err := url.Parse(opts.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			// Credentials in it (user info, a token in the query) would be printed wherever the
			// endpoint is: never echo them.
			shown := httpx.Redact(opts.Endpoint)
			if i := strings.IndexAny(shown, "?#"); i >= 0 {
				shown = shown[:i] + "?…"
			}
			return nil, fmt.Errorf("glance endpoint %q: want http(s)://HOST[:PORT][/PATH] (no credentials, query or fragment)", shown)
		}
		ep := strings.TrimSuffix(opts.Endpoint, "/") + "/"
		pc := &gophercloud.ProviderClient{HTTPClient: hc}
		pc.EndpointLocator = func(gophercloud.EndpointOpts) (string, error) { return ep, nil }
		sc, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{})
		if err != nil {
			return nil, fmt.Errorf("glance endpoint %s: %w", opts.Endpoint, err)
		}
		return &Client{sc: sc, opts: opts, name: strings.TrimSuffix(opts.Endpoint, "/")}, nil
	}
	var ao gophercloud.AuthOptions
	var eo gophercloud.EndpointOpts
	var how string
	if cloud := os.Getenv("OS_CLOUD"); cloud != "" {
		a, e, tlsConfig, err := clouds.Parse()
		if err != nil {
			return nil, fmt.Errorf("glance: OS_CLOUD=%s: %w", cloud, err)
		}
		ao, eo, how = a, e, "OS_CLOUD="+cloud
		ao.AllowReauth = true
		actx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
		defer cancel()
		pc, err := config.NewProviderClient(actx, ao, config.WithTLSConfig(tlsConfig), config.WithHTTPClient(hc))
		if err != nil {
			return nil, authError(how, err)
		}
		return newKeystone(pc, eo, opts, how)
	}
	if os.Getenv("OS_AUTH_URL") == "" {
		return nil, errors.New("glance: not configured: give --glance-endpoint URL (no Keystone), or OS_CLOUD (clouds.yaml), or the OS_* variables (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, …)")
	}
	a, err := openstack.AuthOptionsFromEnv()
	if err != nil {
		return nil, fmt.Errorf("glance: OS_* environment: %w", err)
	}
	ao, how = a, "OS_AUTH_URL="+httpx.Redact(os.Getenv("OS_AUTH_URL"))
	ao.AllowReauth = true
	eo.Region = os.Getenv("OS_REGION_NAME")
	if v := os.Getenv("OS_INTERFACE"); v != "" {
		eo.Availability = gophercloud.Availability(strings.TrimSuffix(v, "URL"))
	}
	actx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
	defer cancel()
	pc, err := config.NewProviderClient(actx, ao, config.WithHTTPClient(hc))
	if err != nil {
		return nil, authError(how, err)
	}
	return newKeystone(pc, eo, opts, how)
}

func newKeystone(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, opts Options, how string) (*Client, error) {
	sc, err := openstack.NewImageV2(pc, eo)
	if err != nil {
		return nil, fmt.Errorf("glance (Keystone, %s): no image endpoint in the catalog: %w", how, err)
	}
	return &Client{sc: sc, opts: opts, name: strings.TrimSuffix(sc.Endpoint, "/")}, nil
}

func authError(how string, err error) error {
	if gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) || gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		return fmt.Errorf("%w: Keystone (%s) refused the credentials: %v", ErrAuth, how, err)
	}
	return fmt.Errorf("%w: Keystone (%s): %v", ErrUnavailable, how, err)
}

// String names the Glance endpoint, e.g. "glance+http://127.0.0.1:9292".
func (c *Client) String() string { return "glance+" + c.name }

// Image is what basefs needs of a Glance image's metadata.
type Image struct {
	ID              string            `json:"id"`
	Name            string            `json:"name,omitempty"`
	Status          string            `json:"status"`
	DiskFormat      string            `json:"disk_format"`
	ContainerFormat string            `json:"container_format"`
	Size            int64             `json:"size"`
	Checksum        string            `json:"checksum,omitempty"`     // MD5 of the data
	HashAlgo        string            `json:"os_hash_algo,omitempty"` // e.g. sha512
	HashValue       string            `json:"os_hash_value,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"` // custom string properties
}

// Manifest returns the basefs_manifest property ("" if none).
func (im *Image) Manifest() string { return im.Properties[ManifestProperty] }

// Usable checks that basefs can serve the image: active, bare, with data.
func (im *Image) Usable() error {
	switch {
	case im.Status != "active":
		return fmt.Errorf("%w: image %s is %q, not active (only active images have data to serve)", ErrUnusable, im.ID, im.Status)
	case im.ContainerFormat != "bare" && !(im.ContainerFormat == im.DiskFormat && (im.DiskFormat == "ami" || im.DiskFormat == "ari" || im.DiskFormat == "aki")):
		return fmt.Errorf("%w: image %s has container format %q: basefs serves only bare images and the ami family in its own container (as nova's libvirt driver does)", ErrUnusable, im.ID, im.ContainerFormat)
	case im.Size <= 0:
		return fmt.Errorf("%w: image %s has no data (size %d)", ErrUnusable, im.ID, im.Size)
	case im.DiskFormat == "":
		return fmt.Errorf("%w: image %s has no disk format", ErrUnusable, im.ID)
	}
	return nil
}

// Image returns image id's metadata. An unknown id wraps chunkstore.ErrNotFound.
func (c *Client) Image(ctx context.Context, id string) (*Image, error) {
	if err := glanceref.ValidateID(id); err != nil {
		return nil, err
	}
	var gi *images.Image
	err := c.retry(ctx, "get image "+id, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
		var err error
		gi, err = images.Get(ctx, c.sc, id).Extract()
		return err
	})
	if err != nil {
		return nil, err
	}
	im := &Image{
		ID: gi.ID, Name: gi.Name, Status: string(gi.Status), DiskFormat: gi.DiskFormat,
		ContainerFormat: gi.ContainerFormat, Size: gi.SizeBytes, Checksum: gi.Checksum,
		Properties: map[string]string{},
	}
	for k, v := range gi.Properties {
		s, ok := v.(string)
		if !ok {
			continue
		}
		switch k {
		case "os_hash_algo":
			im.HashAlgo = s
		case "os_hash_value":
			im.HashValue = s
		default:
			im.Properties[k] = s
		}
	}
	return im, nil
}

// SetProperty sets a custom string property on the image (a JSON-patch "add", which also
// replaces an existing value).
func (c *Client) SetProperty(ctx context.Context, id, name, value string) error {
	if err := glanceref.ValidateID(id); err != nil {
		return err
	}
	return c.retry(ctx, "set property "+name+" on image "+id, func(ctx context.Context) error {
		_, err := images.Update(ctx, c.sc, id, images.UpdateOpts{
			images.UpdateImageProperty{Op: images.AddOp, Name: "/" + name, Value: value},
		}).Extract()
		return err
	})
}

// ReadRange fills p with the image's bytes at [off, off+len(p)) with one request carrying a
// single Range header. The answer must be 206 with exactly len(p) bytes; anything else is an
// error. Transient failures (connection, 5xx, stalls, short bodies) are retried with backoff.
func (c *Client) ReadRange(ctx context.Context, id string, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	what := fmt.Sprintf("image %s bytes %d-%d", id, off, off+int64(len(p))-1)
	return c.retry(ctx, "read "+what, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout+time.Duration(int64(len(p))*int64(time.Second)/c.opts.MinRate))
		defer cancel()
		body, err := c.get(ctx, id, fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1), http.StatusPartialContent)
		if err != nil {
			return err
		}
		defer body.Close()
		n, err := io.ReadFull(body, p)
		if err != nil {
			return fmt.Errorf("%s: got %d bytes: %w", what, n, err)
		}
		var one [1]byte
		if m, _ := body.Read(one[:]); m > 0 {
			return fmt.Errorf("%s: the answer is longer than the range asked for", what)
		}
		return nil
	})
}

// Download opens the image's whole data. Reads fail if nothing arrives for StallTimeout; the
// caller checks the length and the hashes (Glance does not verify what it serves).
func (c *Client) Download(ctx context.Context, id string) (io.ReadCloser, error) {
	var body io.ReadCloser
	err := c.retry(ctx, "download image "+id, func(ctx context.Context) error {
		var err error
		body, err = c.get(ctx, id, "", http.StatusOK)
		return err
	})
	return body, err
}

// get issues GET /v2/images/ID/file. The returned body stops with an error when nothing
// arrives for StallTimeout.
func (c *Client) get(ctx context.Context, id, rng string, code int) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	hdr := map[string]string{}
	if rng != "" {
		hdr["Range"] = rng
	}
	// The request's own timeout covers the headers; the body is bounded by the stall timer.
	hctx, hcancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	stop := context.AfterFunc(hctx, func() {
		if errors.Is(hctx.Err(), context.DeadlineExceeded) {
			cancel(fmt.Errorf("no answer within %s", c.opts.RequestTimeout))
		}
	})
	resp, err := c.sc.Request(ctx, http.MethodGet, c.sc.ServiceURL("images", id, "file"), &gophercloud.RequestOpts{
		MoreHeaders: hdr, OkCodes: []int{code}, KeepResponseBody: true,
	})
	stop()
	hcancel()
	if err != nil {
		cancel(nil)
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
			return nil, fmt.Errorf("%w: %v", errStall, cause)
		}
		return nil, err
	}
	return newStallReader(resp.Body, c.opts.StallTimeout, cancel), nil
}

var errStall = errors.New("transfer stalled")

// stallReader fails reads once nothing arrived for the stall timeout (its timer cancels the
// request's context, which unblocks the read) and names the stall as the cause.
type stallReader struct {
	body   io.ReadCloser
	r      io.Reader
	stall  *httpx.Stall
	cancel context.CancelCauseFunc
}

func newStallReader(body io.ReadCloser, d time.Duration, cancel context.CancelCauseFunc) *stallReader {
	st := httpx.NewStall(d, func() { cancel(fmt.Errorf("%w: nothing received for %s", errStall, d)) })
	return &stallReader{body: body, r: st.Reader(body), stall: st, cancel: cancel}
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w (%v)", errStall, err)
	}
	return n, err
}

func (r *stallReader) Close() error {
	r.stall.Stop()
	err := r.body.Close()
	r.cancel(nil)
	return err
}

// retry runs op until it succeeds, fails permanently, or Attempts transient failures
// happened; the error says what failed on which Glance and classifies it (ErrNotFound,
// ErrAuth, ErrUnavailable).
func (c *Client) retry(ctx context.Context, what string, op func(context.Context) error) error {
	policy := httpx.Policy{Attempts: c.opts.Attempts, Base: c.opts.Backoff, Max: c.opts.Backoff << min(c.opts.Attempts, 16)}
	_, canceled, err := httpx.Do(ctx, policy, func(ctx context.Context, _ int) error { return op(ctx) },
		func(err error) httpx.Verdict {
			if transient(err) {
				return httpx.Retry
			}
			return httpx.Stop
		}, nil, nil)
	switch {
	case err == nil:
		return nil
	case canceled:
		return fmt.Errorf("glance %s: %s: %w (after: %v)", c.name, what, ctx.Err(), err)
	}
	return c.classify(what, err)
}

func transient(err error) bool {
	var uc gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &uc) {
		return httpx.TransientStatus(uc.Actual)
	}
	if t, ok := httpx.Transient(err); ok {
		return t
	}
	return true // stalls, short bodies, answers longer than asked
}

func (c *Client) classify(what string, err error) error {
	var uc gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &uc) {
		switch {
		case uc.Actual == http.StatusNotFound:
			return fmt.Errorf("glance %s: %s: no such image: %w", c.name, what, chunkstore.ErrNotFound)
		case uc.Actual == http.StatusUnauthorized || uc.Actual == http.StatusForbidden:
			return fmt.Errorf("%w: glance %s: %s: HTTP %d: check the credentials (OS_* or clouds.yaml)", ErrAuth, c.name, what, uc.Actual)
		case uc.Actual == http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("glance %s: %s: range not satisfiable (the image is shorter than its metadata says)", c.name, what)
		case uc.Actual >= 500:
			return fmt.Errorf("%w: glance %s: %s: HTTP %d after %d attempts", ErrUnavailable, c.name, what, uc.Actual, c.opts.Attempts)
		default:
			return fmt.Errorf("glance %s: %s: unexpected HTTP %d (want %v)", c.name, what, uc.Actual, uc.Expected)
		}
	}
	return fmt.Errorf("%w: glance %s: %s: %v (after %d attempts; is Glance running?)", ErrUnavailable, c.name, what, err, c.opts.Attempts)
}

// IsUnavailable reports whether err means Glance could not be reached or failed transiently.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
