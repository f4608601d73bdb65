package child

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStopPolite(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !Started(cmd).Stop(10 * time.Second) {
		t.Fatal("Stop reports a kill for a process SIGTERM ends")
	}
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
	if Started(cmd).Stop(300 * time.Millisecond) {
		t.Fatal("Stop reports a polite exit for a process it had to kill")
	}
	if ws := cmd.ProcessState.String(); ws != "signal: killed" {
		t.Fatalf("a process ignoring SIGTERM must be killed after grace, got %q", ws)
	}
}

func TestRetry(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := 0
	ok := Retry(log, "a test", time.Millisecond, func() bool { return false }, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if !ok || n != 3 {
		t.Fatalf("Retry = %v after %d tries, want true after 3", ok, n)
	}
	n = 0
	ok = Retry(log, "a test", time.Millisecond, func() bool { return n == 2 }, func() error { n++; return errors.New("broken") })
	if ok || n != 2 {
		t.Fatalf("Retry = %v after %d tries, want false once quit says so (2)", ok, n)
	}
}

// Notify is ready at READY=1 and not before; the daemon's own sending (cmd/basefs notify.go)
// is exercised by every test that starts a daemon through daemontest.
func TestNotifyReady(t *testing.T) {
	n, err := ListenNotify()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	sock, _ := strings.CutPrefix(n.Env(), "NOTIFY_SOCKET=")
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("STATUS=starting"))
	select {
	case <-n.Ready():
		t.Fatal("ready before READY=1")
	case <-time.After(50 * time.Millisecond):
	}
	c.Write([]byte("READY=1\nMAINPID=1"))
	select {
	case <-n.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("READY=1 not seen")
	}
	c.Write([]byte("MAINPID=2")) // later messages are taken and dropped
}

// StopPid ends a process through its pidfd: politely when SIGTERM works, else by SIGKILL.
func TestStopPid(t *testing.T) {
	polite := exec.Command("sleep", "30")
	if err := polite.Start(); err != nil {
		t.Fatal(err)
	}
	go polite.Wait() // reap it, as its real parent would: StopPid only watches
	if !StopPid(polite.Process.Pid, 10*time.Second) {
		t.Fatal("StopPid killed a process SIGTERM ends")
	}
	firm := exec.Command("sh", "-c", "trap '' TERM; sleep 30")
	if err := firm.Start(); err != nil {
		t.Fatal(err)
	}
	go firm.Wait()
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	start := time.Now()
	if StopPid(firm.Process.Pid, 300*time.Millisecond) {
		t.Fatal("StopPid reports a polite exit for a process it had to kill")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("StopPid took %s", d)
	}
	if !StopPid(firm.Process.Pid, time.Second) {
		t.Fatal("a process that is gone counts as stopped")
	}
}
