package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/httpx"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
)

// glanceOptions configure the Glance client: a fixed endpoint without Keystone, or Keystone
// from OS_CLOUD (clouds.yaml) or the OS_* variables.
type glanceOptions struct {
	endpoint        string
	listMinInterval time.Duration
	listInterval    time.Duration
}

func (o *glanceOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.endpoint, "glance-endpoint", "", "Glance image API `URL` used without Keystone (e.g. http://127.0.0.1:9292); without it, Keystone from OS_CLOUD (clouds.yaml) or OS_AUTH_URL and the other OS_* variables")
	f.DurationVar(&o.listMinInterval, "glance-list-min-interval", 5*time.Second, "a lookup of a nova name the host does not know lists Glance again at most this often (0: on every miss, concurrent misses sharing one listing)")
	f.DurationVar(&o.listInterval, "glance-list-interval", time.Minute, "how often Glance's image list is refreshed in the background (0: only on misses)")
}

func (o *glanceOptions) validate() error {
	if o.listMinInterval < 0 || o.listInterval < 0 {
		return usageError{Msg: "--glance-list-min-interval and --glance-list-interval must be 0 or more"}
	}
	if o.endpoint != "" {
		if u, err := url.Parse(o.endpoint); err != nil || u.User != nil {
			return usageError{Msg: fmt.Sprintf("--glance-endpoint %q: give the URL without credentials (Glance without Keystone takes none; with Keystone use OS_CLOUD or OS_*)", httpx.Redact(o.endpoint))}
		}
	}
	return nil
}

// configured reports whether any Glance configuration is present.
func (o *glanceOptions) configured() bool {
	return o.endpoint != "" || os.Getenv("OS_CLOUD") != "" || os.Getenv("OS_AUTH_URL") != ""
}

// open returns the client; it fails with a message that says how to configure Glance.
func (o *glanceOptions) open(ctx context.Context) (*glance.Client, error) {
	return glance.New(ctx, glance.Options{Endpoint: o.endpoint})
}

// importGlance imports Glance image id into s (streamed once, verified against Glance's
// hashes, converted if not raw) and records nova's name for it.
func importGlance(ctx context.Context, c *glance.Client, s *local.Store, id string, opts importer.Options) (*importer.Result, error) {
	res, _, err := glance.Import(ctx, c, s, id, opts)
	if err != nil {
		return nil, err
	}
	if err := glanceimg.WriteAlias(s.Root(), id, res.Digest); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", id, err)
	}
	return res, nil
}
