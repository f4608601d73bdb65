package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

var basefsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "basefs-cli-test")
	if err != nil {
		panic(err)
	}
	basefsBin = filepath.Join(dir, "basefs")
	os.Setenv("BASEFS_CONFIG", "") // this host's /etc/basefs/basefs.conf changes no test
	if out, err := exec.Command("go", "build", "-race", "-o", basefsBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	glancetest.Stop()
	s3test.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// basefs runs the binary and returns stdout, stderr and the exit code.
func basefs(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(basefsBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func mustBasefs(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := basefs(t, args...)
	if code != 0 {
		t.Fatalf("basefs %v: exit %d\n%s", args, code, errOut)
	}
	return out
}

// importMiB imports raw into state at 1 MiB chunks — the previous default chunk size, the one
// the layouts and counts of the tests that use it are drawn at — and returns the image digest.
func importMiB(t *testing.T, state, raw string) string {
	t.Helper()
	return lastLine(mustBasefs(t, "import", "--state", state, "--chunk-size", "1048576", raw))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestImportListVerifyCorruption(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	img := filepath.Join(dir, "img.raw")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB, compressible
	data = append(data, make([]byte, 2<<20)...)
	os.WriteFile(img, data, 0o644)

	// Three identical data chunks, two holes.
	digest := importMiB(t, state, img)
	var res struct {
		Digest       string `json:"digest"`
		ChunksStored int    `json:"chunks_stored"`
		Holes        int    `json:"holes"`
	}
	if err := json.Unmarshal([]byte(mustBasefs(t, "import", "--state", state, "--chunk-size", "1048576", "--json", img)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Digest != digest || res.ChunksStored != 0 || res.Holes != 2 {
		t.Fatalf("re-import: %+v; want digest %s, nothing stored, 2 holes", res, digest)
	}
	var ls []struct {
		Digest  string `json:"digest"`
		Present int    `json:"chunks_present"`
		Total   int    `json:"chunks_total"`
	}
	json.Unmarshal([]byte(mustBasefs(t, "ls", "--state", state, "--json")), &ls)
	if len(ls) != 1 || ls[0].Digest != digest || ls[0].Present != 1 || ls[0].Total != 3 {
		// three identical data chunks dedup to one object; each counts as present
		if len(ls) != 1 || ls[0].Present != ls[0].Total {
			t.Fatalf("ls: %+v", ls)
		}
	}
	mustBasefs(t, "verify", "--state", state)

	// Flip one byte of the stored chunk: verify names the chunk and its image, exits 1.
	chunks, _ := filepath.Glob(filepath.Join(state, "chunks", "*", "*"))
	if len(chunks) != 1 {
		t.Fatalf("want 1 stored chunk (the data repeats), have %d", len(chunks))
	}
	b, _ := os.ReadFile(chunks[0])
	b[len(b)/2] ^= 1
	os.Chmod(chunks[0], 0o644)
	os.WriteFile(chunks[0], b, 0o444)
	out, _, code := basefs(t, "verify", "--state", state)
	if code != 1 || !strings.Contains(out, filepath.Base(chunks[0])) || !strings.Contains(out, digest) {
		t.Fatalf("verify after corruption: exit %d, output:\n%s\nwant exit 1 naming chunk %s and image %s", code, out, filepath.Base(chunks[0]), digest)
	}
	if _, _, code := basefs(t, "verify", "--state", state, digest); code != 1 {
		t.Fatalf("verify %s: exit %d; want 1", digest, code)
	}
}

// TestPreviousManifestsStillServed: an image as the previous version imported it (manifest
// format 1 at its default chunk size, 1 MiB: testdata/manifest-v1-1MiB, written by basefs at
// commit 73e6478 for the image below) keeps its name — importing the same bytes at 1 MiB
// gives that manifest byte for byte — and a host whose origin holds it mounts it, reads it
// right and verifies it, beside the same image imported at the new default chunk size.
func TestPreviousManifestsStillServed(t *testing.T) {
	dir := t.TempDir()
	golden, err := os.ReadFile(filepath.Join("testdata", "manifest-v1-1MiB"))
	if err != nil {
		t.Fatal(err)
	}
	old := chunkstore.Sum(golden).String()
	data := append(storetest.Data(61, 2<<20), make([]byte, 1<<20)...)
	data = append(data, storetest.Data(62, 1<<20+12345)...)
	data = append(data, make([]byte, 512-len(data)%512)...) // as qemu-img sees a raw file: whole sectors
	img := filepath.Join(dir, "img.raw")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(dir, "origin")
	if got := lastLine(mustBasefs(t, "import", "--state", origin, "--chunk-size", "1048576", img)); got != old {
		t.Fatalf("import at 1 MiB chunks: image %s; the previous version named it %s", got, old)
	}
	if b, err := os.ReadFile(filepath.Join(origin, "manifests", old)); err != nil || !bytes.Equal(b, golden) {
		t.Fatalf("the manifest differs from the previous version's: %v\n%s", err, b)
	}
	cur := lastLine(mustBasefs(t, "import", "--state", origin, img))
	if cur == old {
		t.Fatal("the default import made the 1 MiB manifest; want the default chunk size's")
	}
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	d := startDaemon(t, state, mnt, "--origin", "dir://"+origin, "--fill-rate", "0")
	want := sha256.Sum256(data)
	for _, name := range []string{old, cur} {
		if got := shaFile(t, filepath.Join(mnt, name)); got != want {
			t.Fatalf("image %s read through the mount: wrong bytes", name)
		}
	}
	d.stop()
	var rep struct {
		Checked int   `json:"chunks_checked"`
		Corrupt []any `json:"corrupt"`
	}
	if err := json.Unmarshal([]byte(mustBasefs(t, "verify", "--state", state, "--json", old)), &rep); err != nil || rep.Checked != 4 || len(rep.Corrupt) != 0 {
		t.Fatalf("verify of the 1 MiB image: %+v, %v; want its 4 data chunks, all good", rep, err)
	}
	mustBasefs(t, "verify", "--state", state)
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"frobnicate"},
		{"import"},
		{"import", "--state", dir, "--chunk-size", "12345", "x"},
		{"verify", "--state", dir, "not-a-digest"},
	} {
		if _, errOut, code := basefs(t, args...); code != 2 || errOut == "" {
			t.Errorf("basefs %v: exit %d, stderr %q; want exit 2 and a message", args, code, errOut)
		}
	}
	if _, errOut, code := basefs(t, "ls", "--state", filepath.Join(dir, "absent")); code != 1 || !strings.Contains(errOut, "absent") {
		t.Errorf("ls of an absent state: exit %d, %q", code, errOut)
	}
}
