package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore/importer"
)

// limitsOptions are the bounds on what an image may cost (issue 23): its size, the free
// space kept on the state filesystem, the time one conversion may take.
type limitsOptions struct {
	maxImageSize   int64
	minFree        int64
	convertTimeout time.Duration
}

func (o *limitsOptions) AddFlags(f *pflag.FlagSet) {
	d := importer.DefaultLimits
	f.Int64Var(&o.maxImageSize, "max-image-size", d.MaxSize, "largest virtual size of an image accepted, in bytes (Glance's own image_size_cap by default); a larger one is refused before anything is fetched or converted")
	f.Int64Var(&o.minFree, "min-free", d.MinFree, "bytes kept free on the state filesystem (nova's ephemeral files share it): imports, conversions and fetched chunks stop short of it (0: no reserve)")
	f.DurationVar(&o.convertTimeout, "convert-timeout", d.ConvertTimeout, "longest one qemu-img convert may run")
}

func (o *limitsOptions) limits() (importer.Limits, error) {
	if o.maxImageSize <= 0 {
		return importer.Limits{}, usageError{Msg: fmt.Sprintf("--max-image-size %d: must be more than 0 bytes", o.maxImageSize)}
	}
	if o.minFree < 0 {
		return importer.Limits{}, usageError{Msg: fmt.Sprintf("--min-free %d: must be 0 or more bytes", o.minFree)}
	}
	if o.convertTimeout <= 0 {
		return importer.Limits{}, usageError{Msg: fmt.Sprintf("--convert-timeout %s: must be more than 0", o.convertTimeout)}
	}
	return importer.Limits{MaxSize: o.maxImageSize, MinFree: o.minFree, ConvertTimeout: o.convertTimeout}, nil
}
