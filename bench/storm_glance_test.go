package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// The Glance source of the storm, against a real Glance: publish reads the image from Glance
// once (counted by the proxy), and the tier gets the manifest alone.
func TestGlanceSource(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "curl") // Glance: scripts/start-glance.sh installs it (glanceSource runs it)
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-tags=netgo,osusergo", "-o", bin+"/", "../cmd/basefs").CombinedOutput(); err != nil {
		t.Fatalf("build basefs: %v\n%s", err, out)
	}
	const size = 4 << 20
	data := make([]byte, size)
	rand.Read(data[:3<<20]) // and a zero MiB
	raw := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &env{opts: Options{Progress: testLog{t}}, work: t.TempDir(), basefs: filepath.Join(bin, "basefs"), start: time.Now(), cur: t.Name()}
	src, err := e.glanceSource(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer src.stop()
	if src.imageSize != size || src.publishRead < size || src.publishRead > size*11/10 {
		t.Errorf("publish read %d bytes from Glance for a %d-byte image (%d): want about once", src.publishRead, size, src.imageSize)
	}
	var files []string
	filepath.WalkDir(src.tierDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(src.tierDir, p)
			files = append(files, rel)
		}
		return nil
	})
	if len(files) != 1 || filepath.Dir(files[0]) != "manifests" || len(src.file) != 40 {
		t.Errorf("tier %v, nova's name %q: want the manifest alone and a 40-hex name", files, src.file)
	}
}

// nsCPU counts the CPU time of a process in a network namespace.
func TestNSCPU(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "ip")
	ns := fmt.Sprintf("bfscpu%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	// Busy for a while (no child processes: the shell's own CPU), then idle until killed.
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	busy0, total0, err := machineCPU()
	if err != nil || busy0 <= 0 || busy0 > total0 {
		t.Fatalf("machine CPU: busy %.2f of %.2f s: %v", busy0, total0, err)
	}
	var got float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := nsCPU(context.Background(), ns)
		if err != nil {
			t.Fatal(err)
		}
		if got = c; got >= 0.2 {
			if busy1, _, _ := machineCPU(); busy1-busy0 < 0.2 {
				t.Errorf("the machine was busy %.2f s while the namespace used %.2f", busy1-busy0, got)
			}
			return
		}
	}
	t.Errorf("CPU seconds in %s: %.2f, want ≥ 0.2 (a busy loop of 10⁶ rounds)", ns, got)
}
