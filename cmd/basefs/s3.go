package main

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/origin"
)

// s3Options configure s3:// origins and publish targets. The rest comes from the environment,
// as for every S3 tool: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION /
// AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
type s3Options struct {
	endpoint string
	region   string
}

func (o *s3Options) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.endpoint, "s3-endpoint", "", "S3 service `URL` for s3:// origins and targets, e.g. http://127.0.0.1:7480 (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)")
	f.StringVar(&o.region, "s3-region", "", "S3 region for s3:// URLs (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)")
}

func (o *s3Options) originOptions(log *slog.Logger) origin.Options {
	return origin.Options{S3Endpoint: o.endpoint, S3Region: o.region, Logger: log}
}

// openOrigins opens every origin URL in order; a bad URL is a usage error.
func (o *s3Options) openOrigins(ctx context.Context, urls []string, log *slog.Logger) ([]chunkstore.Getter, error) {
	var origins []chunkstore.Getter
	for _, u := range urls {
		g, err := origin.OpenWith(ctx, u, o.originOptions(log))
		if err != nil {
			return nil, usageError{Msg: "--origin: " + err.Error()}
		}
		origins = append(origins, g)
	}
	return origins, nil
}
