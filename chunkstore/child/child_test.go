package child_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestEnvironmentIsScrubbed(t *testing.T) {
	t.Setenv("OS_PASSWORD", "hunter2")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
	out, err := child.Run(context.Background(), child.Limits{}, "env")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"OS_PASSWORD", "AWS_SECRET", "hunter2", "s3cret"} {
		if strings.Contains(string(out), bad) {
			t.Fatalf("child saw %s:\n%s", bad, out)
		}
	}
}

func TestLimits(t *testing.T) {
	testenv.NeedBinary(t, "prlimit")
	out, err := child.Run(context.Background(), child.QemuImgInfo, "sh", "-c", "ulimit -t; ulimit -v")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "30" || got[1] != "1048576" {
		t.Fatalf("limits seen by the child: %q, want 30 s CPU and 1048576 KiB", out)
	}
	start := time.Now()
	_, err = child.Run(context.Background(), child.Limits{Timeout: 200 * time.Millisecond}, "sleep", "30")
	if err == nil || !strings.Contains(err.Error(), "time bound") || time.Since(start) > 10*time.Second {
		t.Fatalf("sleep 30 under a 200 ms bound: %v after %s", err, time.Since(start))
	}
}
