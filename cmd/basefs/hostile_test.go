package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/inspect/inspecttest"
)

// TestHostileImages (issue 23): every image of the inspection corpus is uploaded to a real
// Glance with its declared disk_format and looked up under nova's name through a real mount,
// then written into _base as nova's download and renamed to an image name. A hostile image
// is absent under nova's name (ENOENT: nova downloads it itself and refuses it), is refused
// as an adopted download (EACCES), is listed with its reason in status, and leaves nothing in
// the state; a clean image of every format reads byte for byte as qemu-img converts it. No
// byte of the host file the hostile images point at is ever served.
func TestHostileImages(t *testing.T) {
	ep := glancetest.Start(t)
	dir := t.TempDir()
	cases := inspecttest.Corpus(t, t.TempDir())
	ids := map[string]string{}
	for _, c := range cases {
		if c.DiskFormat == "qed" || c.DiskFormat == "ploop" {
			continue // refused before any byte is read (glance.CheckDiskFormat)
		}
		container := "bare"
		if c.DiskFormat == "ami" {
			container = "ami" // Glance wants the ami family in its own container
		}
		ids[c.Name] = glancetest.Upload(t, c.Name, c.DiskFormat, container, c.Path)
	}
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--glance-endpoint", ep,
		"--fill-rate", "0", "--glance-list-interval", "0")
	for _, c := range cases {
		id, ok := ids[c.Name]
		if !ok {
			continue
		}
		name := filepath.Join(d.mnt, glanceref.NovaName(id))
		if !c.Safe {
			if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: nova's name of a refused image: %v, want ENOENT", c.Name, err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: read the clean image under nova's name: %v\n%s", c.Name, err, d.log)
			continue
		}
		v, err := inspect.CheckFile(c.Path, c.DiskFormat)
		if err != nil {
			t.Fatal(err)
		}
		want := c.Path // a raw image is served as Glance holds it, to the byte
		if v.QemuFormat != "raw" {
			want = filepath.Join(dir, c.Name+".raw")
			run(t, "qemu-img", "convert", "-f", v.QemuFormat, "-O", "raw", c.Path, want)
		}
		if !bytes.Equal(got, readAll(t, want)) {
			t.Errorf("%s: served bytes differ from qemu-img's conversion", c.Name)
		}
		if bytes.Contains(got, inspecttest.Secret[:27]) {
			t.Errorf("%s: a byte of the host file was served", c.Name)
		}
	}
	// Adoption: nova's download renamed into _base.
	for _, c := range cases {
		if !c.Hostile || c.Name == "vmdk-descriptor-file" { // a text file is raw bytes: safe as such
			continue
		}
		part := filepath.Join(d.mnt, "adopt-"+c.Name+".part")
		if err := os.WriteFile(part, readAll(t, c.Path), 0o644); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(d.mnt, glanceref.NovaName("adopt-"+c.Name))
		if err := os.Rename(part, target); !errors.Is(err, syscall.EACCES) {
			t.Errorf("%s: adoption of a hostile download: %v, want EACCES", c.Name, err)
		}
		if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the refused download is there under its image name: %v", c.Name, err)
		}
		os.Remove(part)
	}
	// Status says why, per image; the state keeps only the clean images.
	st := d.status()
	reasons := map[string]string{}
	for _, r := range st.Refused {
		reasons[r.Name] = r.Reason
	}
	for _, c := range cases {
		id, ok := ids[c.Name]
		if c.Safe || !ok {
			continue
		}
		if r := reasons[glanceref.NovaName(id)]; !strings.Contains(r, "refused") {
			t.Errorf("%s: status does not say why it was refused (got %q)", c.Name, r)
		}
	}
	d.stop()
	// `basefs import glance://ID` of a hostile image: refused, nothing kept.
	state2 := filepath.Join(dir, "state2")
	for _, name := range []string{"qcow2-backing", "vmdk-extent-path", "qcow2-as-raw"} {
		_, errOut, code := basefs(t, "import", "--state", state2, "--glance-endpoint", ep, "glance://"+ids[name])
		if code == 0 || !strings.Contains(errOut, "refused") {
			t.Errorf("basefs import of %s: exit %d: %s", name, code, errOut)
		}
	}
	if n := storeFiles(t, state2); n != 0 {
		t.Errorf("refused imports left %d chunks", n)
	}
}
