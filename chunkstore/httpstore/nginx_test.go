package httpstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// startNginx serves root with a real nginx on a free loopback port until the test ends and
// returns the base URL. The configuration, pid file and logs are private to the test.
func startNginx(t *testing.T, root string) string {
	t.Helper()
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		p, err := exec.LookPath("nginx")
		if err != nil {
			testenv.Skip(t, "nginx is not installed (neither /usr/sbin/nginx nor nginx on PATH): install nginx-light to test the HTTP origin against a real web server")
		}
		bin = p
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root, workers would switch to nobody, who cannot read the tests' 0700 temp dirs.
		user = "user root;"
	}
	// A port taken between freePort and nginx's bind makes nginx fail; try another.
	var lastErr error
	for range 3 {
		port := freePort(t)
		conf := filepath.Join(dir, "nginx.conf")
		text := fmt.Sprintf(`%[1]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
	access_log off;
	log_not_found off;
	sendfile on;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	uwsgi_temp_path %[2]s/tmp/uwsgi;
	scgi_temp_path %[2]s/tmp/scgi;
	server {
		listen 127.0.0.1:%[3]d;
		root %[4]s;
	}
}
`, user, dir, port, root)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;")
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers die with it in cleanup
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitListening(addr, exited); err != nil {
			stopNginx(cmd, exited)
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			lastErr = fmt.Errorf("nginx on %s: %v\n%s%s", addr, err, out.Bytes(), log)
			continue
		}
		t.Cleanup(func() { stopNginx(cmd, exited) })
		return "http://" + addr
	}
	t.Fatal(lastErr)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before listening: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("not listening after 10 s")
}

// stopNginx asks nginx to stop at once (SIGTERM: fast shutdown, workers included), and kills
// its process group if it has not within 5 s.
func stopNginx(cmd *exec.Cmd, exited <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// served writes with a local store into a directory nginx serves, and reads through
// httpstore: the store suite then tests every read of the HTTP origin.
type served struct {
	w *local.Store
	r *httpstore.Store
}

var _ chunkstore.Store = served{}

func (s served) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	return s.r.GetChunk(ctx, d)
}
func (s served) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.r.HasChunk(ctx, d)
}
func (s served) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	return s.r.GetManifest(ctx, d)
}
func (s served) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.r.HasManifest(ctx, d)
}
func (s served) String() string { return s.r.String() }
func (s served) PutChunk(ctx context.Context, c *chunkstore.Chunk) (bool, error) {
	return s.w.PutChunk(ctx, c)
}
func (s served) DeleteChunk(ctx context.Context, d chunkstore.Digest) error {
	return s.w.DeleteChunk(ctx, d)
}
func (s served) PutManifest(ctx context.Context, m *chunkstore.Manifest) (chunkstore.Digest, error) {
	return s.w.PutManifest(ctx, m)
}
func (s served) DeleteManifest(ctx context.Context, d chunkstore.Digest) error {
	return s.w.DeleteManifest(ctx, d)
}
func (s served) WalkChunks(ctx context.Context, fn func(chunkstore.Digest) error) error {
	return s.w.WalkChunks(ctx, fn)
}
func (s served) WalkManifests(ctx context.Context, fn func(chunkstore.Digest) error) error {
	return s.w.WalkManifests(ctx, fn)
}

// publish makes a new published directory under the served root and returns a local store
// writing into it and an httpstore reading it through nginx.
func publish(t *testing.T, root, base string) served {
	t.Helper()
	dir, err := os.MkdirTemp(root, "pub-")
	if err != nil {
		t.Fatal(err)
	}
	w, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := httpstore.New(base+"/"+filepath.Base(dir)+"/", httpstore.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return served{w: w, r: r}
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off = int64(len(b)) / 2
	}
	b[off] ^= 0x40
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestStoreSuiteThroughNginx runs the store suite with every read going through a real nginx
// serving the directory a local store writes.
func TestStoreSuiteThroughNginx(t *testing.T) {
	root := t.TempDir()
	base := startNginx(t, root)
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) chunkstore.Store { return publish(t, root, base) },
		Corrupt: func(t *testing.T, s chunkstore.Store, d chunkstore.Digest) {
			flipByte(t, s.(served).w.ChunkPath(d), -1)
		},
	})
}

func TestNginxOrigin(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	base := startNginx(t, root)
	s := publish(t, root, base)
	if got, want := s.r.String(), base+"/"+filepath.Base(s.w.Root()); got != want {
		t.Fatalf("String() = %q; want %q (the base URL, without the trailing slash)", got, want)
	}

	var chunks []*chunkstore.Chunk
	for _, data := range [][]byte{
		storetest.Data(11, chunkstore.DefaultChunkSize), // incompressible: raw
		bytes.Repeat([]byte("compressible "), 80000),    // zstd
		storetest.Data(12, 777),                         // short last chunk
	} {
		c := chunkstore.NewChunk(data)
		if _, err := s.w.PutChunk(ctx, c); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	m := &chunkstore.Manifest{Size: 2<<20 + 777, ChunkSize: 1 << 20, Chunks: []chunkstore.Digest{chunks[0].Digest(), chunks[1].Digest(), chunks[2].Digest()},
		Source: chunkstore.Source{Format: "raw", GlanceID: "7c1b2a4e-0000-4000-8000-000000000001"}}
	md, err := s.w.PutManifest(ctx, m)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Reads", func(t *testing.T) {
		// Concurrent readers, for the race detector and the connection pool.
		var wg sync.WaitGroup
		for range 8 {
			for _, c := range chunks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := s.r.GetChunk(ctx, c.Digest())
					if err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(got.Data(), c.Data()) {
						t.Errorf("chunk %s: other bytes", c.Digest().Short())
					}
				}()
			}
		}
		wg.Wait()
		got, err := s.r.GetManifest(ctx, md)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != m.Size || got.Source != m.Source || len(got.Chunks) != 3 || got.Chunks[2] != m.Chunks[2] {
			t.Fatalf("GetManifest = %+v; want %+v", got, m)
		}
		if ok, err := s.r.HasChunk(ctx, chunks[1].Digest()); !ok || err != nil {
			t.Fatalf("HasChunk(present) = %v, %v", ok, err)
		}
		if ok, err := s.r.HasManifest(ctx, md); !ok || err != nil {
			t.Fatalf("HasManifest(present) = %v, %v", ok, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		absent := chunkstore.Sum([]byte("never published"))
		_, err := s.r.GetChunk(ctx, absent)
		if !chunkstore.IsNotFound(err) || !strings.Contains(err.Error(), s.r.ChunkURL(absent)) {
			t.Fatalf("GetChunk(absent) = %v; want ErrNotFound naming %s", err, s.r.ChunkURL(absent))
		}
		if httpstore.IsTransient(err) {
			t.Fatalf("IsTransient(%v) = true", err)
		}
		if _, err := s.r.GetManifest(ctx, absent); !chunkstore.IsNotFound(err) {
			t.Fatalf("GetManifest(absent) = %v; want ErrNotFound", err)
		}
		if ok, err := s.r.HasChunk(ctx, absent); ok || err != nil {
			t.Fatalf("HasChunk(absent) = %v, %v; want false, nil", ok, err)
		}
		if ok, err := s.r.HasManifest(ctx, absent); ok || err != nil {
			t.Fatalf("HasManifest(absent) = %v, %v; want false, nil", ok, err)
		}
	})

	// Damage on disk behind nginx: the reads must refuse it, naming the object and the URL.
	t.Run("CorruptChunkOnDisk", func(t *testing.T) {
		for i, damage := range []func(p string){
			func(p string) { flipByte(t, p, -1) },                          // payload
			func(p string) { flipByte(t, p, 0) },                           // header magic
			func(p string) { os.Chmod(p, 0o644); os.Truncate(p, 100) },     // cut short
			func(p string) { os.Chmod(p, 0o644); os.WriteFile(p, nil, 0) }, // empty
		} {
			c := chunkstore.NewChunk(storetest.Data(uint64(20+i), 200000))
			if _, err := s.w.PutChunk(ctx, c); err != nil {
				t.Fatal(err)
			}
			damage(s.w.ChunkPath(c.Digest()))
			_, err := s.r.GetChunk(ctx, c.Digest())
			var ce *chunkstore.CorruptError
			if !errors.As(err, &ce) || ce.Digest != c.Digest() || ce.Where != s.r.ChunkURL(c.Digest()) {
				t.Fatalf("%d: GetChunk of a damaged object = %v; want a CorruptError naming %s at %s", i, err, c.Digest(), s.r.ChunkURL(c.Digest()))
			}
			if httpstore.IsTransient(err) {
				t.Fatalf("%d: IsTransient(%v) = true", i, err)
			}
		}
	})

	t.Run("CorruptManifestOnDisk", func(t *testing.T) {
		m2 := &chunkstore.Manifest{Size: 5, ChunkSize: 1 << 16, Chunks: []chunkstore.Digest{chunkstore.Sum([]byte("hello"))}}
		d2, err := s.w.PutManifest(ctx, m2)
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, s.w.ManifestPath(d2), 3)
		_, err = s.r.GetManifest(ctx, d2)
		var ce *chunkstore.CorruptError
		if !errors.As(err, &ce) || ce.Kind != "manifest" || ce.Digest != d2 || ce.Where != s.r.ManifestURL(d2) {
			t.Fatalf("GetManifest of a damaged manifest = %v; want a manifest CorruptError at %s", err, s.r.ManifestURL(d2))
		}

		// A valid manifest published under another's name is refused too.
		_, enc, _ := m.Digest()
		wrong := chunkstore.Sum([]byte("some other image"))
		os.WriteFile(s.w.ManifestPath(wrong), enc, 0o444)
		_, err = s.r.GetManifest(ctx, wrong)
		if !errors.As(err, &ce) || ce.Digest != wrong || ce.Got != md {
			t.Fatalf("GetManifest of a manifest under the wrong name = %v; want a CorruptError saying it hashes to %s", err, md)
		}
	})
}

// testLogger sends the store's log to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
