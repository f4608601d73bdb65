package agent

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func testSpec(kernel string) domainSpec {
	return domainSpec{
		Meta: Metadata{ID: "web-1", Image: testDigest.String(), ImageSize: 5 * MiB, View: testDigest.String() + "_1",
			Base: "/var/lib/basefs/instances/_base", Dir: "/var/lib/basefs/instances/web-1", DiskSize: GiB, Created: "2026-01-02T03:04:05Z"},
		Guest: Guest{
			VirtType: "qemu", VCPUs: 2, MemoryKiB: 256 * 1024,
			Disk: "/var/lib/basefs/instances/web-1/disk", Backing: "/var/lib/basefs/instances/_base/" + testDigest.String() + "_1",
			CacheMode: "none", Console: "/var/lib/basefs/instances/web-1/console.log",
			Kernel: kernel, Initrd: map[bool]string{true: "/boot/initrd"}[kernel != ""], Cmdline: map[bool]string{true: "console=ttyS0"}[kernel != ""],
		},
	}
}

// TestBuildDomain checks the XML the domain is defined with, and that its metadata reads
// back through a libvirtxml round trip.
func TestBuildDomain(t *testing.T) {
	for _, kernel := range []string{"", "/boot/vmlinuz"} {
		def, err := buildDomain(testSpec(kernel))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := def.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`<domain type="qemu">`, `<name>basefs-web-1</name>`,
			`<instance xmlns="https://basefs.dev/agent/1"><id>web-1</id><image>` + testDigest.String() + `</image>`,
			`<memory unit="KiB">262144</memory>`, `<vcpu>2</vcpu>`,
			`<on_poweroff>destroy</on_poweroff>`,
			`<driver name="qemu" type="qcow2" cache="none"></driver>`,
			`<source file="/var/lib/basefs/instances/web-1/disk"></source>`,
			`<backingStore type="file">`, `<format type="raw"></format>`,
			`<source file="/var/lib/basefs/instances/_base/` + testDigest.String() + `_1">`,
			`<seclabel model="dac" relabel="no"></seclabel>`,
			`<backingStore></backingStore>`,
			`<target dev="vda" bus="virtio"></target>`,
			`<serial type="file">`, `<source path="/var/lib/basefs/instances/web-1/console.log"></source>`,
		} {
			if !strings.Contains(doc, want) {
				t.Errorf("kernel %q: the domain XML lacks %s\n%s", kernel, want, doc)
			}
		}
		if kernel == "" && (!strings.Contains(doc, `<boot dev="hd">`) || strings.Contains(doc, "<kernel>")) {
			t.Errorf("BIOS boot: want <boot dev=hd> and no kernel\n%s", doc)
		}
		if kernel != "" && (!strings.Contains(doc, "<kernel>/boot/vmlinuz</kernel>") || !strings.Contains(doc, "<initrd>/boot/initrd</initrd>") ||
			!strings.Contains(doc, "<cmdline>console=ttyS0</cmdline>") || strings.Contains(doc, "<boot ")) {
			t.Errorf("direct kernel boot: want kernel, initrd, cmdline and no boot device\n%s", doc)
		}
		var back libvirtxml.Domain
		if err := back.Unmarshal(doc); err != nil {
			t.Fatal(err)
		}
		m, err := parseMetadata(back.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		want := testSpec(kernel).Meta
		m.XMLName = want.XMLName
		if *m != want {
			t.Errorf("metadata round trip: %+v, want %+v", *m, want)
		}
		inst := describe("web-1", &back, "/elsewhere/web-1")
		if inst.Image != testDigest || inst.Disk != "/var/lib/basefs/instances/web-1/disk" || inst.Backing != testSpec("").Backing ||
			inst.Memory != 256*MiB || inst.VCPUs != 2 || inst.DiskSize != GiB || inst.Dir != "/var/lib/basefs/instances/web-1" {
			t.Errorf("describe: %+v", inst)
		}
	}
}

// TestParseMetadata finds the agent's element among others, as libvirt may print it (with a
// prefix), and refuses a domain without it.
func TestParseMetadata(t *testing.T) {
	md := &libvirtxml.DomainMetadata{XML: `<nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>x</nova:name></nova:instance>` +
		`<basefs:instance xmlns:basefs="https://basefs.dev/agent/1"><basefs:id>a</basefs:id><basefs:image>` + testDigest.String() + `</basefs:image><basefs:disk-size>512</basefs:disk-size></basefs:instance>`}
	m, err := parseMetadata(md)
	if err != nil || m.ID != "a" || m.Image != testDigest.String() || m.DiskSize != 512 {
		t.Fatalf("parseMetadata: %+v, %v", m, err)
	}
	for _, bad := range []*libvirtxml.DomainMetadata{nil, {XML: ""}, {XML: `<instance><id>a</id></instance>`}, {XML: `<basefs:instance xmlns:basefs="https://basefs.dev/agent/1"><`}} {
		if m, err := parseMetadata(bad); err == nil {
			t.Errorf("parseMetadata(%v) = %+v", bad, m)
		}
	}
}
