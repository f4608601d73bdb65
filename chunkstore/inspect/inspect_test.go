package inspect_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/inspect/inspecttest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestCorpusVerdicts(t *testing.T) {
	for _, c := range inspecttest.Corpus(t, t.TempDir()) {
		t.Run(c.Name, func(t *testing.T) {
			res, err := inspect.CheckFile(c.Path, c.DiskFormat)
			if c.Safe {
				if err != nil {
					t.Fatalf("refused a clean image: %v", err)
				}
				if res.Format != c.Format {
					t.Fatalf("detected %s, want %s", res.Format, c.Format)
				}
				return
			}
			if !errors.Is(err, inspect.ErrRefused) {
				t.Fatalf("accepted (%+v, %v), want a refusal", res, err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestNovaAgrees runs nova's own inspector (Debian's python3-nova) on the corpus and checks
// that it accepts and refuses what basefs does, but where the case says why it differs.
func TestNovaAgrees(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat("/usr/lib/python3/dist-packages/nova/virt/images.py"); err != nil {
		testenv.Skip(t, "python3-nova is not installed (scripts/setup-host.sh installs it)")
	}
	cases := inspecttest.Corpus(t, t.TempDir())
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(c.Path + "\t" + c.DiskFormat + "\n")
	}
	cmd := exec.Command(py, filepath.Join("testdata", "nova_verdict.py"))
	cmd.Stdin = strings.NewReader(in.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nova's inspector: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for i, c := range cases {
		if !sc.Scan() {
			t.Fatalf("nova answered %d of %d images\n%s", i, len(cases), stderr.String())
		}
		nova := sc.Text()
		novaOK := strings.HasPrefix(nova, "ok ")
		_, err := inspect.CheckFile(c.Path, c.DiskFormat)
		ours := err == nil
		switch {
		case c.NovaDiffers != "":
			if novaOK == ours {
				t.Errorf("%s: nova now agrees (%s); drop NovaDiffers %q", c.Name, nova, c.NovaDiffers)
			}
		case novaOK != ours:
			t.Errorf("%s (disk_format %q): nova says %q, basefs says %v", c.Name, c.DiskFormat, nova, err)
		}
	}
}

func TestHeaderReadIsBounded(t *testing.T) {
	// A huge sparse raw image: inspection reads only the regions the inspectors want.
	f, err := os.Create(filepath.Join(t.TempDir(), "big.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{r: f}
	res, err := inspect.Check(cr, 1<<40, "raw")
	if err != nil || res.Format != "raw" {
		t.Fatalf("got %+v, %v", res, err)
	}
	if cr.n > 2<<20 {
		t.Fatalf("read %d bytes of a 1 TiB image to inspect it", cr.n)
	}
	t.Logf("read %d bytes in %d reads", cr.n, cr.reads)
}

type countingReader struct {
	r        *os.File
	n, reads int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n += int64(len(p))
	c.reads++
	return c.r.ReadAt(p, off)
}

func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	for _, c := range inspecttest.Corpus(f, dir) {
		b, err := os.ReadFile(c.Path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 40<<10)], c.DiskFormat) // the headers; whole VHDX regions make the engine slow
	}
	f.Fuzz(func(t *testing.T, b []byte, diskFormat string) {
		res, err := inspect.Check(bytes.NewReader(b), int64(len(b)), diskFormat)
		if err == nil && (res.Format == "" || res.QemuFormat == "") {
			t.Fatalf("accepted with an empty verdict %+v", res)
		}
		if err != nil && !errors.Is(err, inspect.ErrRefused) {
			t.Fatalf("a read from memory failed: %v", err)
		}
	})
}

// BenchmarkCheckRaw is what inspection costs an image: its header regions (a 1 GiB sparse
// raw file here, from the page cache).
func BenchmarkCheckRaw(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "img.raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Truncate(1 << 30)
	for b.Loop() {
		if _, err := inspect.Check(f, 1<<30, "raw"); err != nil {
			b.Fatal(err)
		}
	}
}
