package bench

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSlug(t *testing.T) {
	if got := slug("rand 4 KiB QD16, O_DIRECT"); got != "rand-4-kib-qd16-o_direct" {
		t.Errorf("slug = %q", got)
	}
}

func TestProcessCPU(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	d0, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for r0 := rusage(); rusage()-r0 < 200*time.Millisecond; { // spin: 200 ms of CPU, however loaded the host
	}
	d1, err := processCPU(os.Getpid())
	if err != nil || d1-d0 < 150*time.Millisecond {
		t.Errorf("200 ms of spinning counted %v of CPU (%v)", d1-d0, err)
	}
	if _, err := processCPU(-1); err == nil {
		t.Error("processCPU(-1): no error")
	}
}
