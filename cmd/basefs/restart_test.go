package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
	basefsd "github.com/basefs/basefs/daemon"
)

// TestRestartAnswered: `basefs restart` is answered on the control socket by the supervisor —
// a handover to a binary that cannot serve fails at once with the reason (it used to wait
// 90 s for a new serving process), the old one serving on and the failure counted; with the
// binary repaired, the answer names the new serving process.
func TestRestartAnswered(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "basefs")
	run(t, "cp", basefsBin, bin)
	d := startDaemonBin(t, bin, nil, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"))
	before := d.status().PID
	os.Remove(bin)
	os.WriteFile(bin, []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755)
	t0 := time.Now()
	_, stderr, code := basefs(t, "restart", d.mnt)
	took := time.Since(t0)
	if code == 0 || !strings.Contains(stderr, "exited before it was ready") {
		t.Fatalf("restart to a broken binary: exit %d, %q; want the handover's error", code, stderr)
	}
	if took > 15*time.Second {
		t.Fatalf("the failed restart was answered after %s", took)
	}
	if st := d.status(); st.PID != before {
		t.Fatalf("the serving process changed (%d → %d) though the new binary failed", before, st.PID)
	}
	if n := basefsd.HandoverFailures(d.state); n != 1 {
		t.Fatalf("handover failures counted: %d, want 1", n)
	}
	os.Remove(bin)
	run(t, "cp", basefsBin, bin)
	out, stderr, code := basefs(t, "restart", d.mnt)
	after := d.status().PID
	if code != 0 || after == before || !strings.Contains(out, fmt.Sprintf("serving process %d (", before)) || !strings.Contains(out, fmt.Sprintf("→ %d (", after)) {
		t.Fatalf("restart: exit %d, %q %q; serving process %d → %d", code, out, stderr, before, after)
	}
	t.Logf("failed restart answered in %s; %s", took.Round(time.Millisecond), strings.TrimSpace(out))
}
