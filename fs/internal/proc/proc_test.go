package proc

import (
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"testing"
	"time"
)

func wait(cmd *exec.Cmd) <-chan struct{} {
	dead := make(chan struct{})
	go func() { cmd.Wait(); close(dead) }()
	return dead
}

func TestStopPolite(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Stop(cmd.Process, wait(cmd), 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("SIGTERM should end sleep at once; took %s", d)
	}
	if ws := cmd.ProcessState.String(); ws != "signal: terminated" {
		t.Fatalf("want it ended by SIGTERM, got %q", ws)
	}
}

func TestStopFirm(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	Stop(cmd.Process, wait(cmd), 300*time.Millisecond)
	if ws := cmd.ProcessState.String(); ws != "signal: killed" {
		t.Fatalf("a process ignoring SIGTERM must be killed after grace, got %q", ws)
	}
}

func TestRetry(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := 0
	ok := Retry(log, time.Millisecond, func() bool { return false }, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if !ok || n != 3 {
		t.Fatalf("Retry = %v after %d tries, want true after 3", ok, n)
	}
	n = 0
	ok = Retry(log, time.Millisecond, func() bool { return n == 2 }, func() error { n++; return errors.New("broken") })
	if ok || n != 2 {
		t.Fatalf("Retry = %v after %d tries, want false once quit says so (2)", ok, n)
	}
}
