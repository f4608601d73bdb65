package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore/glance"
)

// glanceOptions configure the Glance client: a fixed endpoint without Keystone, or Keystone
// from OS_CLOUD (clouds.yaml) or the OS_* variables.
type glanceOptions struct {
	endpoint string
}

func (o *glanceOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.endpoint, "glance-endpoint", "", "Glance image API `URL` used without Keystone (e.g. http://127.0.0.1:9292); without it, Keystone from OS_CLOUD (clouds.yaml) or OS_AUTH_URL and the other OS_* variables")
}

// configured reports whether any Glance configuration is present.
func (o *glanceOptions) configured() bool {
	return o.endpoint != "" || os.Getenv("OS_CLOUD") != "" || os.Getenv("OS_AUTH_URL") != ""
}

// open returns the client; it fails with a message that says how to configure Glance.
func (o *glanceOptions) open(ctx context.Context) (*glance.Client, error) {
	return glance.New(ctx, glance.Options{Endpoint: o.endpoint})
}
