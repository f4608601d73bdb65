package daemontest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A daemon that exits before it is ready is reported at once, with how it ended, not after
// the timeout.
func TestStartExitsEarly(t *testing.T) {
	t0 := time.Now()
	_, err := Start(context.Background(), exec.Command("sh", "-c", "exit 3"), t.TempDir(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Start of a command that exits: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("the early exit was seen after %s", d)
	}
}

// A daemon that never says READY=1 is stopped when the timeout passes.
func TestStartTimeout(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	_, err := Start(context.Background(), cmd, t.TempDir(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "READY=1") {
		t.Fatalf("Start of a command that never notifies: %v", err)
	}
	if cmd.ProcessState == nil {
		t.Fatal("the daemon that timed out was not stopped")
	}
}
