package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestGCRacesWritersAndKills: writers of references (nova's adoptions through the mount, and
// `basefs import` beside the daemon) and collectors (nova's unlink, `basefs gc` with a minimum
// age of 0, which removes every unused image) run at once over images that share all but one
// chunk, and the whole daemon is SIGKILLed at a random point of each round, then restarted on
// the same state. Afterwards every image the state lists reads one of the written contents
// through the mount, no listed image lacks a chunk (nothing else could give it again), and
// `basefs verify` is clean. A collector that computed references before a writer's manifest
// existed deletes chunks the writer found present: the image is listed but reads EIO.
func TestGCRacesWritersAndKills(t *testing.T) {
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	const cs, chunks, variants = chunkstore.DefaultChunkSize, 64, 4
	base := storetest.Data(2401, cs*chunks)
	var contents [variants][]byte
	var names [variants]string
	wants := map[[32]byte]bool{}
	for i := range variants {
		b := append([]byte(nil), base...)
		b[i*cs] ^= 0xff // each differs from the others in one chunk
		contents[i] = b
		wants[sha256.Sum256(b)] = true
		h := sha1.Sum([]byte(fmt.Sprint("gcrace-", i)))
		names[i] = hex.EncodeToString(h[:])
		p := filepath.Join(dir, fmt.Sprint("v", i, ".raw"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--remove-unused-original-min-age", "0", "--manager-interval", "0", "--fill-rate", "0", "--scrub-rate", "0", "--profile-window", "0"}
	rng := rand.New(rand.NewPCG(24, 5))
	var adopted, removed, collected, imported int64
	start := time.Now()
	rounds, checked := 0, 0
	for ; time.Since(start) < 20*time.Second; rounds++ {
		d := startDaemon(t, state, mnt, args...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		count := func(n *int64) { mu.Lock(); *n++; mu.Unlock() }
		seed := rng.Uint64()
		worker := func(k uint64, f func(r *rand.Rand)) {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, k))
				for {
					select {
					case <-stop:
						return
					default:
					}
					f(r)
				}
			})
		}
		for w := range 2 { // adopters: nova's download renamed to the image name
			worker(uint64(w), func(r *rand.Rand) {
				i := r.IntN(variants)
				part := filepath.Join(mnt, fmt.Sprint(names[i], ".", w, ".part"))
				if os.WriteFile(part, contents[i], 0o644) == nil && os.Rename(part, filepath.Join(mnt, names[i])) == nil {
					count(&adopted)
				}
			})
		}
		worker(10, func(r *rand.Rand) { // nova's unlink
			if os.Remove(filepath.Join(mnt, names[r.IntN(variants)])) == nil {
				count(&removed)
			}
		})
		worker(11, func(r *rand.Rand) { // cleanup: every unused image goes (minimum age 0)
			if exec.Command(basefsBin, "gc", "--base", mnt).Run() == nil {
				count(&collected)
			}
		})
		worker(12, func(r *rand.Rand) { // another process writing references to the same state
			if exec.Command(basefsBin, "import", "--state", state, filepath.Join(dir, fmt.Sprint("v", r.IntN(variants), ".raw"))).Run() == nil {
				count(&imported)
			}
		})
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		powerCut(d)
		close(stop)
		wg.Wait()
		// Every image the state lists has all its chunks, verified (nothing else has them).
		listed := listImages(t, state)
		checked += len(listed)
		out, errOut, code := basefs(t, append([]string{"verify", "--state", state, "--json"}, listed...)...)
		var rep cache.VerifyReport
		// A nova name is removed before its image: none names an image that is gone.
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(state, "aliases", n))
			if dg, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "digest "); err == nil && ok && !slices.Contains(listed, dg) {
				t.Fatalf("round %d: nova's name %s names image %s, which is gone", rounds, n, dg)
			}
		}
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Missing != 0 || len(rep.Corrupt) != 0 {
			t.Fatalf("round %d: verify of the %d listed images: exit %d, %+v\n%s%s\n%s", rounds, len(listed), code, rep, out, errOut, d.log)
		}
	}
	d := startDaemon(t, state, mnt, args...)
	// The state after the kills still takes every image (sharing what is left) and serves it.
	for i := range variants {
		part := filepath.Join(mnt, names[i]+".part")
		if err := os.WriteFile(part, contents[i], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(part, filepath.Join(mnt, names[i])); err != nil {
			t.Fatalf("adopt %s after the kills: %v\n%s", names[i], err, d.log)
		}
		if got := shaFile(t, filepath.Join(mnt, names[i])); got != sha256.Sum256(contents[i]) {
			t.Fatalf("%s reads other bytes after the kills", names[i])
		}
	}
	listed := listImages(t, state)
	for _, im := range listed {
		f, err := os.Open(filepath.Join(d.mnt, im))
		if err != nil {
			t.Fatalf("listed image %s: %v", im, err)
		}
		b := make([]byte, len(base)+1)
		n, err := f.ReadAt(b, 0)
		f.Close()
		if n != len(base) || !wants[sha256.Sum256(b[:n])] {
			t.Fatalf("listed image %s reads %d bytes (%v), not one of the contents written\n%s", im, n, err, d.log)
		}
	}
	if out, errOut, code := basefs(t, "verify", "--state", state); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%d rounds in %v, each ended by SIGKILL: %d adoptions, %d unlinks, %d gc runs, %d imports; %d listed images verified whole after the kills; at the end %d listed, all read right (%s)",
		rounds, time.Since(start).Round(time.Second), adopted, removed, collected, imported, checked, len(listed), strings.Join(short(listed), " "))
}

// listImages returns the digests of the manifests in state.
func listImages(t *testing.T, state string) []string {
	ents, err := os.ReadDir(filepath.Join(state, "manifests"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var listed []string
	for _, e := range ents {
		if _, err := chunkstore.ParseDigest(e.Name()); err == nil {
			listed = append(listed, e.Name())
		}
	}
	return listed
}

func short(ds []string) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d[:12]
	}
	return out
}

// powerCut kills every process of daemon d at once, as a power cut would: each is stopped
// (SIGSTOP) until no new one appears — a supervisor starts a serving process when its own
// dies, and a serving process a supervisor — and then all are killed. (kill9 kills them in
// turn, and a process started in between survives it.)
func powerCut(d *daemon) {
	stopped := map[int]bool{}
	for {
		found := false
		for _, pid := range daemonPIDs(d) {
			if !stopped[pid] {
				stopped[pid], found = true, true
				syscall.Kill(pid, syscall.SIGSTOP)
			}
		}
		if !found {
			break
		}
	}
	for pid := range stopped {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// End the connection as the power cut would, through the kernel's fusectl, before
	// waiting: a killed process that holds the connection's descriptor can block in its own
	// exit on a request to that connection (closing a file of the mount), which nobody
	// answers any more — it never exits, and the connection never ends.
	abortFUSE(d.t, d.mnt)
	<-d.done
}

// abortFUSE aborts the FUSE connection mounted on mnt (fusectl's abort; mounted if needed).
func abortFUSE(t *testing.T, mnt string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	const ctl = "/sys/fs/fuse/connections"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[4] != mnt {
			continue
		}
		_, minor, _ := strings.Cut(f[2], ":")
		if _, err := os.Stat(filepath.Join(ctl, minor)); err != nil {
			if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
				t.Fatalf("mount fusectl on %s: %v", ctl, err)
			}
		}
		if err := os.WriteFile(filepath.Join(ctl, minor, "abort"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("abort FUSE connection %s of %s: %v", minor, mnt, err)
		}
	}
}

// daemonPIDs returns the processes of daemon d: basefs processes of its state directory.
func daemonPIDs(d *daemon) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && args[0] == basefsBin && slices.Contains(args, d.state) && slices.Contains(args, d.mnt) {
			pids = append(pids, pid)
		}
	}
	return pids
}
