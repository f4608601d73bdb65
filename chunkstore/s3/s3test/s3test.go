// Package s3test runs a real one-node Ceph with radosgw on loopback for tests
// (scripts/start-ceph.sh), one per test process in its own state directory and ports, and
// gives each test its own bucket. Call Stop from TestMain (after m.Run).
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/basefs/basefs/chunkstore/s3"
	"github.com/basefs/basefs/chunkstore/testenv"
)

var (
	ceph = testenv.Service{Name: "Ceph RGW", DirVar: "BASEFS_CEPH_DIR", TempDir: "basefs-s3test"}
	mu   sync.Mutex // serialises StopRGW/StartRGW
	env  map[string]string
	// startEnv is the environment of the first start, given to every later script run (the
	// ports must stay the same, or start-ceph.sh would make the cluster anew).
	startEnv []string
)

// Start starts this process's Ceph (once) and returns the environment S3 clients need
// (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). It skips t (fails
// under BASEFS_TEST_NO_SKIP=1) when Ceph cannot be started.
func Start(t testing.TB) map[string]string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "bash", "curl")
	ceph.Start(t, func() error {
		var ports []int
		for range 2 {
			p, err := testenv.FreePort()
			if err != nil {
				return err
			}
			ports = append(ports, p)
		}
		startEnv = []string{"BASEFS_CEPH_RGW_PORT=" + strconv.Itoa(ports[0]),
			"BASEFS_CEPH_MON_PORT=" + strconv.Itoa(ports[1]), "BASEFS_CEPH_MEM_BYTES=" + strconv.Itoa(1<<30)}
		out, err := ceph.Run("start-ceph.sh", startEnv)
		env = parseEnv(out)
		return err
	})
	return env
}

// parseEnv reads the KEY=VALUE lines a start script prints.
func parseEnv(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Stop stops the Ceph Start started and removes its state.
func Stop() { ceph.Stop("stop-ceph.sh", startEnv...) }

// StopRGW stops radosgw only (an outage of the S3 service; the cluster keeps its data).
func StopRGW(t testing.TB) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if _, err := ceph.Run("stop-ceph.sh", startEnv, "rgw"); err != nil {
		t.Fatal(err)
	}
}

// StartRGW starts radosgw again after StopRGW and waits until it answers.
func StartRGW(t testing.TB) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if _, err := ceph.Run("start-ceph.sh", startEnv); err != nil {
		t.Fatal(err)
	}
}

// Env returns the environment as KEY=VALUE strings (for a child process).
func Env(t testing.TB) []string {
	var out []string
	for k, v := range Start(t) {
		out = append(out, k+"="+v)
	}
	return out
}

var (
	bucketOnce sync.Once
	bucketErr  error
)

// Bucket is the one bucket of this test process (made on first use: a new bucket costs RGW
// seconds); tests get prefixes of their own in it.
const Bucket = "basefs-test"

// Config returns the s3.Config of a fresh, empty prefix of its own in Bucket for t, and its
// s3:// URL.
func Config(t testing.TB) (s3.Config, string) {
	t.Helper()
	e := Start(t)
	url := fmt.Sprintf("s3://%s/t%08x", Bucket, rand.Uint32())
	cfg, err := s3.ConfigFromEnv(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoint, cfg.Region = e["AWS_ENDPOINT_URL"], e["AWS_REGION"]
	cfg.AccessKey, cfg.SecretKey = e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
	bucketOnce.Do(func() {
		c := cfg
		c.CreateBucket = true
		_, bucketErr = s3.New(context.Background(), c)
	})
	if bucketErr != nil {
		t.Fatal(bucketErr)
	}
	return cfg, url
}

// rawClient returns a client of s's bucket that bypasses the store (to reach its objects
// from outside).
func rawClient(t testing.TB, s *s3.Store) *minio.Client {
	t.Helper()
	e := Start(t)
	cfg := s3.Config{Bucket: s.Bucket(), Endpoint: e["AWS_ENDPOINT_URL"], Region: e["AWS_REGION"],
		AccessKey: e["AWS_ACCESS_KEY_ID"], SecretKey: e["AWS_SECRET_ACCESS_KEY"]}
	c, err := s3.RawClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Overwrite replaces the object at key with b, unconditionally (to damage it from outside).
func Overwrite(t testing.TB, s *s3.Store, key string, b []byte) {
	t.Helper()
	c := rawClient(t, s)
	if _, err := c.PutObject(context.Background(), s.Bucket(), key, bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{DisableMultipart: true}); err != nil {
		t.Fatalf("overwrite %s: %v", key, err)
	}
}

// Read returns the object at key.
func Read(t testing.TB, s *s3.Store, key string) []byte {
	t.Helper()
	c := rawClient(t, s)
	o, err := c.GetObject(context.Background(), s.Bucket(), key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(o); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b.Bytes()
}
