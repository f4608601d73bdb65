package s3

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix, err string
	}{
		{"s3://basefs", "basefs", "", ""},
		{"s3://basefs/", "basefs", "", ""},
		{"s3://basefs/fleet", "basefs", "fleet/", ""},
		{"s3://basefs/fleet/a/", "basefs", "fleet/a/", ""},
		{"s3://my.bucket-1/x", "my.bucket-1", "x/", ""},
		{"s3://ab/x", "", "", "3 to 63"},
		{"s3://Basefs/x", "", "", "only a-z"},
		{"s3://-basefs", "", "", "start and end"},
		{"s3://basefs:9000/x", "", "", "port"},
		{"s3://key:secret@basefs/x", "", "", "credentials"},
		{"s3://basefs/x?endpoint=y", "", "", "query"},
		{"s3://basefs/x#f", "", "", "fragment"},
		{"s3://basefs/a//b", "", "", "empty"},
		{"s3://basefs/a/../b", "", "", "segment"},
		{"s3://basefs/a b", "", "", "printable"},
		{"http://basefs/x", "", "", "scheme"},
		{"s3:basefs", "", "", "no //"},
	} {
		b, p, err := ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) = %q, %q, %v; want an error containing %q", tc.in, b, p, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, p, err, tc.bucket, tc.prefix)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_S3": "http://s3only:2",
		"AWS_DEFAULT_REGION": "eu-1", "AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk",
	}
	cfg, err := configFrom("s3://basefs/p", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "http://s3only:2" || cfg.Region != "eu-1" || cfg.AccessKey != "ak" || cfg.SecretKey != "sk" || cfg.URL() != "s3://basefs/p/" {
		t.Fatalf("configFrom = %+v", cfg)
	}
	env["AWS_REGION"] = "eu-2"
	delete(env, "AWS_ENDPOINT_URL_S3")
	cfg, _ = configFrom("s3://basefs", func(k string) string { return env[k] })
	if cfg.Endpoint != "http://general:1" || cfg.Region != "eu-2" {
		t.Fatalf("AWS_REGION/AWS_ENDPOINT_URL not taken: %+v", cfg)
	}
	delete(env, "AWS_SECRET_ACCESS_KEY")
	if _, err := configFrom("s3://basefs", func(k string) string { return env[k] }); err == nil {
		t.Fatal("an access key without a secret was accepted")
	}
	for _, ep := range []string{"ftp://x", "http://", "http://h/path", "http://u:p@h", "h:1"} {
		if _, _, err := parseEndpoint(ep); err == nil {
			t.Errorf("parseEndpoint(%q) accepted", ep)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://basefs", "s3://basefs/a/b/", "s3://a.b-c/x?y", "s3://x:1@y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		b, p, err := ParseURL(raw)
		if err != nil {
			return
		}
		if validBucket(b) != nil || (p != "" && !strings.HasSuffix(p, "/")) || strings.Contains(p, "//") {
			t.Fatalf("ParseURL(%q) = %q, %q: not a valid bucket and prefix", raw, b, p)
		}
		// A parsed URL parses again to the same thing.
		b2, p2, err := ParseURL("s3://" + b + "/" + p)
		if err != nil || b2 != b || p2 != p {
			t.Fatalf("ParseURL round trip of %q: %q, %q, %v", raw, b2, p2, err)
		}
	})
}
