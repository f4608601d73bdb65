// Package proc holds what the supervisor and the relay do alike with their serving
// processes: start one again until it works, and stop one politely, then firmly.
package proc

import (
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Retry calls try until it succeeds, logging each failure and waiting backoff between
// attempts (a broken binary or state may take a while to be fixed). It gives up, returning
// false, when quit reports true after a failure.
func Retry(log *slog.Logger, backoff time.Duration, quit func() bool, try func() error) bool {
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return true
		}
		log.Error("cannot start a serving process; retrying", "attempt", attempt, "err", err)
		if quit() {
			return false
		}
		time.Sleep(backoff)
	}
}

// Stop asks process p to exit (SIGTERM) unless dead is closed already, and waits until it
// is; if it has not exited within grace it is killed (SIGKILL) and waited for.
func Stop(p *os.Process, dead <-chan struct{}, grace time.Duration) {
	select {
	case <-dead:
		return
	default:
	}
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-dead:
	case <-t.C:
		p.Kill()
		<-dead
	}
}
