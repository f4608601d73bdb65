package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore/httpx"
)

// Config says which bucket and prefix a Store uses, where the S3 service is and who we are.
// ConfigFromEnv fills it the way S3 tools do; flags may then override fields.
type Config struct {
	// Bucket and Prefix locate the layout: objects are <Prefix>chunks/…, <Prefix>manifests/…,
	// <Prefix>profiles/…. Prefix is empty or ends with "/".
	Bucket, Prefix string
	// Endpoint is the service's base URL, http:// or https:// (default https://s3.amazonaws.com).
	// Buckets are addressed by path (…/bucket/key), which every S3 engine accepts.
	Endpoint string
	// Region signs requests (default us-east-1; Ceph RGW accepts any).
	Region string
	// AccessKey, SecretKey and SessionToken are the credentials; all empty means anonymous.
	AccessKey, SecretKey, SessionToken string

	// Timeout bounds one attempt, from sending the request to the last byte (default 30 s).
	Timeout time.Duration
	// MaxAttempts bounds the attempts per call, the first included (default 3).
	MaxAttempts int
	// BaseBackoff is the wait before the second attempt, doubled for each later one, with
	// jitter (default 50 ms); MaxBackoff caps it (default 2 s).
	BaseBackoff, MaxBackoff time.Duration
	// Cooldown is how long the store answers at once with an unavailable error after a call
	// has used up its attempts on transient failures (default 2 s): readers fail over to the
	// next tier at once instead of each waiting through its own retries. The first call after
	// the cooldown tries the service again, so a service that comes back is used again.
	Cooldown time.Duration
	// MaxManifestSize bounds a manifest's body (default 64 MiB).
	MaxManifestSize int64
	// CreateBucket makes the bucket at New if it does not exist (publish; an origin never does).
	CreateBucket bool
	// Logger receives retries (Info) and corrupt objects (Warn); nil logs nothing.
	Logger *slog.Logger
}

// Defaults for the zero values of Config.
const (
	DefaultEndpoint        = "https://s3.amazonaws.com"
	DefaultRegion          = "us-east-1"
	DefaultTimeout         = 30 * time.Second
	DefaultMaxAttempts     = 3
	DefaultBaseBackoff     = 50 * time.Millisecond
	DefaultMaxBackoff      = 2 * time.Second
	DefaultCooldown        = 2 * time.Second
	DefaultMaxManifestSize = 64 << 20
)

// IsURL reports whether raw names an S3 location (s3://…).
func IsURL(raw string) bool { return strings.HasPrefix(raw, "s3://") }

// ParseURL parses s3://BUCKET[/PREFIX] and returns the bucket and the prefix ("" or ending
// with "/"). The bucket must be a valid S3 bucket name; the URL may carry no user, port,
// query or fragment (the endpoint and credentials come from the environment or flags).
func ParseURL(raw string) (bucket, prefix string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("s3 URL %q: %s; want s3://BUCKET[/PREFIX]", raw, why)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", bad("does not parse")
	}
	switch {
	case u.Scheme != "s3":
		return "", "", bad("scheme is not s3")
	case u.Opaque != "":
		return "", "", bad("no // after s3:")
	case u.User != nil:
		return "", "", bad("credentials in the URL are not supported (they would show in logs); use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
	case u.Port() != "" || strings.Contains(u.Host, ":"):
		return "", "", bad("the bucket cannot have a port; the service's address goes in AWS_ENDPOINT_URL or --s3-endpoint")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return "", "", bad("a query or fragment is not allowed")
	}
	if err := validBucket(u.Host); err != nil {
		return "", "", bad(err.Error())
	}
	p := strings.TrimPrefix(u.Path, "/")
	if p != "" {
		for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", bad("the prefix has an empty, . or .. segment")
			}
		}
		for _, r := range p {
			if r < 0x21 || r > 0x7e {
				return "", "", bad("the prefix may hold only printable ASCII without spaces")
			}
		}
		p = strings.TrimSuffix(p, "/") + "/"
	}
	return u.Host, p, nil
}

// validBucket checks S3's bucket naming rules (3–63 of a-z 0-9 . -, starting and ending with a
// letter or digit).
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket %q must be 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket %q may hold only a-z, 0-9, '-' and '.'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) || strings.Contains(b, "..") {
		return fmt.Errorf("bucket %q must start and end with a letter or digit", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ConfigFromEnv returns the Config for s3://BUCKET[/PREFIX] from the environment, as the AWS
// CLI and SDKs read it: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (the service's URL);
// AWS_REGION, else AWS_DEFAULT_REGION; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN. Unset values get the defaults.
func ConfigFromEnv(raw string) (Config, error) {
	return configFrom(raw, os.Getenv)
}

func configFrom(raw string, getenv func(string) string) (Config, error) {
	bucket, prefix, err := ParseURL(raw)
	if err != nil {
		return Config{}, err
	}
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := getenv(k); v != "" {
				return v
			}
		}
		return ""
	}
	cfg := Config{
		Bucket:       bucket,
		Prefix:       prefix,
		Endpoint:     first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		Region:       first("AWS_REGION", "AWS_DEFAULT_REGION"),
		AccessKey:    getenv("AWS_ACCESS_KEY_ID"),
		SecretKey:    getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: getenv("AWS_SESSION_TOKEN"),
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return Config{}, errors.New("s3: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (anonymous)")
	}
	return cfg, nil
}

// URL returns the store's s3:// URL.
func (c *Config) URL() string { return "s3://" + c.Bucket + "/" + c.Prefix }

// parseEndpoint checks Endpoint and returns host[:port] and whether it is https.
func parseEndpoint(ep string) (host string, secure bool, err error) {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("s3 endpoint %q: want http(s)://HOST[:PORT] (no path, query or credentials)", httpx.Redact(ep))
	}
	return u.Host, u.Scheme == "https", nil
}
