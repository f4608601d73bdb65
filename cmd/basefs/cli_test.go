package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
	"github.com/basefs/basefs/chunkstore/testenv"
)

var basefsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "basefs-cli-test")
	if err != nil {
		panic(err)
	}
	basefsBin = filepath.Join(dir, "basefs")
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

	digest := lastLine(mustBasefs(t, "import", "--state", state, img))
	var res struct {
		Digest       string `json:"digest"`
		ChunksStored int    `json:"chunks_stored"`
		Holes        int    `json:"holes"`
	}
	if err := json.Unmarshal([]byte(mustBasefs(t, "import", "--state", state, "--json", img)), &res); err != nil {
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
