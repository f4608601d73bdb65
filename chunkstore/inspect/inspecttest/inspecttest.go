// Package inspecttest builds the image corpus the inspection tests share: clean images of
// every format made by the real qemu-img, and hostile ones as an attacker writes them (real
// qemu-img images pointing at a host file, hand-crafted headers), each with basefs's verdict.
package inspecttest

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// Secret is the content of the host file hostile images point at: no byte served from any
// of them may contain it.
var Secret = bytes.Repeat([]byte("HOST-SECRET-basefs-issue23\n"), 64)

// Case is one image of the corpus.
type Case struct {
	Name       string
	Path       string
	DiskFormat string // what its uploader declares (Glance's disk_format)
	// Safe is basefs's verdict; Format the detected format when safe.
	Safe   bool
	Format string
	// NovaDiffers, when set, says why the installed nova (Debian 12's 26.2.2 inspector)
	// answers otherwise: basefs follows nova's later rules there.
	NovaDiffers string
	// Hostile marks an image that would read the host file if followed.
	Hostile bool
}

// Corpus writes the corpus into dir (with the host file Secret at dir/host-secret) and
// returns it. It needs qemu-img.
func Corpus(t testing.TB, dir string) []Case {
	t.Helper()
	testenv.NeedBinary(t, "qemu-img")
	secret := filepath.Join(dir, "host-secret")
	must(t, os.WriteFile(secret, Secret, 0o600))
	p := func(n string) string { return filepath.Join(dir, n) }
	qemu := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	const vsize = "1M"
	// A raw disk with data and an MBR-less first sector.
	raw := pattern(1 << 20)
	must(t, os.WriteFile(p("clean.raw"), raw, 0o644))
	var cases []Case
	add := func(c Case) { cases = append(cases, c) }
	add(Case{Name: "raw", Path: p("clean.raw"), DiskFormat: "raw", Safe: true, Format: "raw"})
	for _, f := range []struct{ name, qfmt, opts, disk string }{
		{"qcow2", "qcow2", "", "qcow2"},
		{"vmdk-sparse", "vmdk", "subformat=monolithicSparse", "vmdk"},
		{"vmdk-stream", "vmdk", "subformat=streamOptimized", "vmdk"},
		{"vhd", "vpc", "", "vhd"},
		{"vhdx", "vhdx", "", "vhdx"},
		{"vdi", "vdi", "", "vdi"},
	} {
		args := []string{"convert", "-q", "-f", "raw", "-O", f.qfmt}
		if f.opts != "" {
			args = append(args, "-o", f.opts)
		}
		qemu(append(args, p("clean.raw"), p("clean."+f.name))...)
		add(Case{Name: f.name, Path: p("clean." + f.name), DiskFormat: f.disk, Safe: true, Format: f.disk})
	}
	// A streamOptimized VMDK with its grain directory in a footer, which nova cannot read as
	// a stream: not a vmdk to nova, so refused as one.
	footer := read(t, p("clean.vmdk-stream"))
	binary.LittleEndian.PutUint64(footer[56:], ^uint64(0))
	must(t, os.WriteFile(p("footer.vmdk"), footer, 0o644))
	add(Case{Name: "vmdk-footer", Path: p("footer.vmdk"), DiskFormat: "vmdk"})
	// Declared formats that do not match.
	add(Case{Name: "qcow2-as-raw", Path: p("clean.qcow2"), DiskFormat: "raw"})
	add(Case{Name: "raw-as-qcow2", Path: p("clean.raw"), DiskFormat: "qcow2"})
	add(Case{Name: "vhd-as-vhdx", Path: p("clean.vhd"), DiskFormat: "vhdx"})
	add(Case{Name: "qcow2-as-ami", Path: p("clean.qcow2"), DiskFormat: "ami", Safe: true, Format: "qcow2"})
	add(Case{Name: "raw-as-ploop", Path: p("clean.raw"), DiskFormat: "ploop"})
	qemu("create", "-q", "-f", "qed", p("clean.qed"), vsize)
	add(Case{Name: "qed", Path: p("clean.qed"), DiskFormat: "qed"})

	// A qcow2 whose backing file is the host file, with and without a backing format.
	qemu("create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", p("backing.qcow2"), vsize)
	add(Case{Name: "qcow2-backing", Path: p("backing.qcow2"), DiskFormat: "qcow2", Hostile: true})
	add(Case{Name: "qcow2-backing-as-ami", Path: p("backing.qcow2"), DiskFormat: "ami", Hostile: true})
	// A qcow2 whose external data file is the host file.
	qemu("create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", p("datafile.qcow2"), vsize)
	add(Case{Name: "qcow2-data-file", Path: p("datafile.qcow2"), DiskFormat: "qcow2", Hostile: true})
	// An unknown incompatible feature bit (bit 4, extended L2, is past what nova knows).
	b := read(t, p("clean.qcow2"))
	b[0x48+7] |= 0x10
	must(t, os.WriteFile(p("feature.qcow2"), b, 0o644))
	add(Case{Name: "qcow2-unknown-feature", Path: p("feature.qcow2"), DiskFormat: "qcow2"})

	// VMDK monolithicSparse whose descriptor names the host file as an extent.
	add(Case{Name: "vmdk-extent-path", Path: vmdkWithDescriptor(t, p("clean.vmdk-sparse"), p("extent.vmdk"),
		func(d string) string { return replaceLine(d, "RW ", `RW 2048 FLAT "`+secret+`" 0`) }), DiskFormat: "vmdk", Hostile: true})
	add(Case{Name: "vmdk-flat-type", Path: vmdkWithDescriptor(t, p("clean.vmdk-sparse"), p("flattype.vmdk"),
		func(d string) string { return strings.Replace(d, "monolithicSparse", "monolithicFlat", 1) }),
		DiskFormat: "vmdk", NovaDiffers: "nova's inspector passes it; nova refuses it later from qemu-img info's create-type"})
	add(Case{Name: "vmdk-bad-line", Path: vmdkWithDescriptor(t, p("clean.vmdk-sparse"), p("badline.vmdk"),
		func(d string) string { return replaceLine(d, "# Extent", "include /etc/passwd") }), DiskFormat: "vmdk"})
	// A text descriptor file (monolithicFlat) whose extent is the host file: no KDMV header,
	// so it is raw content and must never be given to qemu-img as vmdk.
	desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"" + secret + "\" 0\n"
	must(t, os.WriteFile(p("descriptor.vmdk"), []byte(desc), 0o644))
	add(Case{Name: "vmdk-descriptor-file", Path: p("descriptor.vmdk"), DiskFormat: "vmdk", Hostile: true})
	add(Case{Name: "vmdk-descriptor-file-as-raw", Path: p("descriptor.vmdk"), DiskFormat: "raw", Safe: true, Format: "raw"})

	// ISO 9660: a primary volume descriptor at 32 KiB.
	isoImg := make([]byte, 64<<10)
	copy(isoImg[32<<10:], "\x01CD001\x01")
	binary.LittleEndian.PutUint32(isoImg[32<<10+80:], 32)
	binary.LittleEndian.PutUint16(isoImg[32<<10+128:], 2048)
	must(t, os.WriteFile(p("clean.iso"), isoImg, 0o644))
	add(Case{Name: "iso", Path: p("clean.iso"), DiskFormat: "iso", Safe: true, Format: "iso"})
	// A hybrid ISO (an MBR too, as bootable-from-USB ISOs have) is an ISO.
	hyb := bytes.Clone(isoImg)
	mbr(hyb, 0x80, 0x83, 1)
	must(t, os.WriteFile(p("hybrid.iso"), hyb, 0o644))
	add(Case{Name: "iso-hybrid", Path: p("hybrid.iso"), DiskFormat: "iso", Safe: true, Format: "iso"})
	// A qcow2 header (with a backing file) hidden in an ISO: two formats, refused.
	hidden := bytes.Clone(isoImg)
	copy(hidden, read(t, p("backing.qcow2"))[:4096])
	must(t, os.WriteFile(p("hidden.iso"), hidden, 0o644))
	add(Case{Name: "iso-with-qcow2", Path: p("hidden.iso"), DiskFormat: "iso", Hostile: true})

	// Raw disks with partition tables (nova's later GPT/MBR rules).
	withMBR := bytes.Clone(raw)
	mbr(withMBR, 0x80, 0x83, 2048)
	must(t, os.WriteFile(p("mbr.raw"), withMBR, 0o644))
	add(Case{Name: "raw-mbr", Path: p("mbr.raw"), DiskFormat: "raw", Safe: true, Format: "gpt"})
	gpt := bytes.Clone(raw)
	mbr(gpt, 0x00, 0xEE, 1)
	gpt[446+1], gpt[446+2], gpt[446+3] = 0, 2, 0
	must(t, os.WriteFile(p("gpt.raw"), gpt, 0o644))
	add(Case{Name: "raw-gpt", Path: p("gpt.raw"), DiskFormat: "raw", Safe: true, Format: "gpt"})
	badBoot := bytes.Clone(raw)
	mbr(badBoot, 0x42, 0x83, 2048)
	must(t, os.WriteFile(p("badboot.raw"), badBoot, 0o644))
	add(Case{Name: "raw-mbr-bad-boot-flag", Path: p("badboot.raw"), DiskFormat: "raw", NovaDiffers: "Debian's nova has no MBR check (oslo.utils ≥ 7.3 has)"})
	gptExtra := bytes.Clone(gpt)
	gptExtra[446+16+4] = 0x83
	must(t, os.WriteFile(p("gptextra.raw"), gptExtra, 0o644))
	add(Case{Name: "raw-gpt-extra-partition", Path: p("gptextra.raw"), DiskFormat: "raw", NovaDiffers: "Debian's nova has no MBR check (oslo.utils ≥ 7.3 has)"})
	// A Linux kernel (bzImage) as nova's AMI-style kernel image: its first sector carries the
	// boot-sector signature with x86 code where MBR partition entries would be. Debian's nova
	// calls it raw and boots it (make run-openstack's guest is one); as a raw disk it is refused
	// like any invalid MBR.
	kernel := bytes.Clone(raw)
	copy(kernel, "MZ")
	mbr(kernel, 0x42, 0x83, 2048) // not a boot flag: code
	copy(kernel[0x202:], "HdrS")
	must(t, os.WriteFile(p("vmlinuz"), kernel, 0o644))
	add(Case{Name: "kernel-as-aki", Path: p("vmlinuz"), DiskFormat: "aki", Safe: true, Format: "raw"})
	add(Case{Name: "kernel-as-ari", Path: p("vmlinuz"), DiskFormat: "ari", Safe: true, Format: "raw"})
	add(Case{Name: "kernel-as-raw", Path: p("vmlinuz"), DiskFormat: "raw", NovaDiffers: "Debian's nova has no MBR check (oslo.utils ≥ 7.3 has)"})

	// LUKS: an encrypted disk basefs cannot serve; version 2 nova refuses outright.
	for _, v := range []uint16{1, 2} {
		l := bytes.Clone(raw)
		copy(l, "LUKS\xba\xbe")
		binary.BigEndian.PutUint16(l[6:], v)
		name := "luks" + string(rune('0'+v))
		must(t, os.WriteFile(p(name+".raw"), l, 0o644))
		add(Case{Name: name + "-as-raw", Path: p(name + ".raw"), DiskFormat: "raw", NovaDiffers: "Debian's nova does not know LUKS (it calls it raw)"})
	}
	return cases
}

// pattern returns n bytes of non-zero data with no format's magic in it.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/4096) | 1
	}
	return b
}

// mbr writes a one-partition MBR (and its signature) into b.
func mbr(b []byte, boot, ostype byte, startLBA uint32) {
	clear(b[446:512])
	b[446] = boot
	b[446+4] = ostype
	binary.LittleEndian.PutUint32(b[446+8:], startLBA)
	binary.LittleEndian.PutUint32(b[446+12:], 100)
	b[510], b[511] = 0x55, 0xAA
}

// vmdkWithDescriptor copies the monolithicSparse VMDK src to dst with its embedded
// descriptor rewritten by edit (padded to the descriptor's size).
func vmdkWithDescriptor(t testing.TB, src, dst string, edit func(string) string) string {
	t.Helper()
	b := read(t, src)
	descSec := binary.LittleEndian.Uint64(b[28:])
	descNum := binary.LittleEndian.Uint64(b[36:])
	start, end := int(descSec*512), int((descSec+descNum)*512)
	d := strings.TrimRight(string(b[start:end]), "\x00")
	nd := edit(d)
	if len(nd) > end-start {
		t.Fatalf("edited descriptor too long")
	}
	clear(b[start:end])
	copy(b[start:], nd)
	must(t, os.WriteFile(dst, b, 0o644))
	return dst
}

func replaceLine(d, prefix, with string) string {
	lines := strings.Split(d, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = with
			return strings.Join(lines, "\n")
		}
	}
	return d + "\n" + with
}

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
