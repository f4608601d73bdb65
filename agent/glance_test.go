package agent_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
)

func glanceBytes(e *agenttest.Env) (fetches, bytes int64) {
	for _, o := range e.Status().Stats.Origins {
		if strings.HasPrefix(o.Origin, "glance+") {
			return o.Fetches, o.Bytes
		}
	}
	return 0, 0
}

func prefixSHA256(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// spawn --image glance://ID boots the test guest with an empty local state and nothing
// published: a raw image lazily by range (bytes from Glance ≈ bytes the guest read, not the
// image; background fill off), and a qcow2 image through the conversion path.
func TestSpawnGlanceRawLazyAndQcow2(t *testing.T) {
	ep := glancetest.Start(t)
	e := agenttest.NewWith(t, "--glance-endpoint", ep, "--fill-rate", "0", "--scrub-rate", "0")
	const readBytes = 8 << 20
	img := e.Import(41, 24<<20, 40<<20) // 64 MiB: 24 MiB of data, then zeros
	rawID := glancetest.Upload(t, "raw", "raw", "bare", img.Raw)
	guest := img
	guest.Size, guest.SHA256 = readBytes, prefixSHA256(t, img.Raw, readBytes)

	req := e.SpawnRequest(e.ID("graw"), guest, agent.GiB, img.Size, "r")
	req.Image = "glance://" + rawID
	res, bt := spawnAndBoot(t, e, req, guest)
	_, got := glanceBytes(e)
	t.Logf("raw lazy: cold boot to sha line %.2f s (spawn returned after %.2f s); %d MiB taken from Glance of a %d MiB image (guest read %d MiB)",
		bt.sha.Seconds(), bt.running.Seconds(), got>>20, img.Size>>20, readBytes>>20)
	// For comparison, the whole download (nova's way, and basefs import glance://).
	t1 := time.Now()
	if out, err := exec.Command(agenttest.Basefs(t), "import", "--state", filepath.Join(e.Dir, "whole"), "--glance-endpoint", ep, "glance://"+rawID).CombinedOutput(); err != nil {
		t.Fatalf("basefs import glance://: %v %s", err, out)
	}
	t.Logf("whole download + verify + chunk of the raw image: %.2f s for %d MiB", time.Since(t1).Seconds(), img.Size>>20)
	if got < readBytes || got > readBytes+(16<<20) {
		t.Errorf("bytes from Glance = %d; want about the %d bytes the guest read (plus readahead), not the %d-byte image", got, readBytes, img.Size)
	}
	if !strings.HasPrefix(filepath.Base(res.Backing), fmt.Sprintf("%x", sha1Of(rawID))) {
		t.Errorf("backing file %s is not nova's name for the image", res.Backing)
	}

	// qcow2 through the conversion path.
	qcow := filepath.Join(e.Dir, "img.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", img.Raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	qID := glancetest.Upload(t, "qcow2", "qcow2", "bare", qcow)
	_, before := glanceBytes(e)
	req = e.SpawnRequest(e.ID("gqcow"), guest, agent.GiB, img.Size, "q")
	req.Image = "glance://" + qID
	_, bt = spawnAndBoot(t, e, req, guest)
	_, after := glanceBytes(e)
	t.Logf("qcow2 converted: cold boot to sha line %.2f s; %d MiB taken from Glance (the whole qcow2 file)", bt.sha.Seconds(), (after-before)>>20)
}

func sha1Of(id string) []byte {
	h := sha1.Sum([]byte(id))
	return h[:]
}
