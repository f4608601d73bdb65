package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/basefs/basefs/daemon/control"
)

// TestCPUProfile records a CPU profile through the control socket: what comes back is a
// pprof profile (gzipped protocol buffers).
func TestCPUProfile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), control.SocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer (&Server{}).Serve(l)()
	var buf bytes.Buffer
	if err := control.NewClient(sock).CPUProfile(context.Background(), time.Second, &buf); err != nil {
		t.Fatal(err)
	}
	z, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatalf("the profile is not gzipped: %v", err)
	}
	if b, err := io.ReadAll(z); err != nil || len(b) == 0 {
		t.Fatalf("the profile: %d bytes, %v", len(b), err)
	}
}
