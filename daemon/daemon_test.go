package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/daemon/control"
)

// TestDaemonServesWhole: the daemon is built whole before it serves, so the first request on
// its control socket finds every part (before, the socket served while the cache was being
// made and answered 503); stopping it closes the cache.
func TestDaemonServesWhole(t *testing.T) {
	dir := t.TempDir()
	st, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Version: "t1", Mountpoint: "/m", Store: st, OriginURLs: []string{}, Supervisor: os.Getppid})
	if err != nil {
		t.Fatal(err)
	}
	sock := control.SocketFromState(dir)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := d.start(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := control.NewClient(sock)
	s, err := c.Status(context.Background())
	if err != nil {
		t.Fatalf("the first status: %v", err)
	}
	if s.PID != os.Getpid() || s.Version != "t1" || s.State != dir || s.Manager == nil || s.Writable == nil || s.Glance != nil || s.Peers != nil {
		t.Fatalf("status: %+v", s)
	}
	if _, err := c.EnsureImage(context.Background(), chunkstore.Digest{1}); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Fatalf("ensure of an image no origin has: %v", err)
	}
	if _, err := c.GC(context.Background(), true); err != nil {
		t.Fatalf("gc: %v", err)
	}
}
