package agent

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"libvirt.org/go/libvirtxml"
)

// MetadataNS is the XML namespace of the agent's element in a domain's <metadata>.
const MetadataNS = "https://basefs.dev/agent/1"

// Metadata is what the agent records in each domain it defines (and so in <ID>/libvirt.xml):
// enough for list, show and terminate to need no other registry.
type Metadata struct {
	XMLName   xml.Name `xml:"https://basefs.dev/agent/1 instance"`
	ID        string   `xml:"id"`
	Image     string   `xml:"image"`      // the image digest
	ImageSize int64    `xml:"image-size"` // bytes
	View      string   `xml:"view"`       // the view's file name in the mount
	Base      string   `xml:"base"`       // the mount point
	Dir       string   `xml:"dir"`        // the instance directory
	DiskSize  int64    `xml:"disk-size"`  // bytes, the overlay's virtual size
	Created   string   `xml:"created"`    // RFC 3339
}

// parseMetadata finds the agent's element in a domain's metadata.
func parseMetadata(md *libvirtxml.DomainMetadata) (*Metadata, error) {
	if md == nil {
		return nil, errors.New("no <metadata>")
	}
	dec := xml.NewDecoder(bytes.NewReader([]byte(md.XML)))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, fmt.Errorf("no <instance xmlns=%q> in <metadata>", MetadataNS)
		}
		if err != nil {
			return nil, fmt.Errorf("<metadata>: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != MetadataNS || se.Name.Local != "instance" {
			continue
		}
		var m Metadata
		if err := dec.DecodeElement(&m, &se); err != nil {
			return nil, fmt.Errorf("<metadata>: %w", err)
		}
		return &m, nil
	}
}

// domainSpec is everything an instance's domain definition is made from.
type domainSpec struct {
	Meta Metadata
	Guest
}

// Guest is the machine a domain describes, apart from its name and the agent's metadata.
type Guest struct {
	VirtType  string
	VCPUs     uint
	MemoryKiB uint
	Disk      string // the qcow2 overlay
	Backing   string // the view in the mount
	CacheMode string
	Console   string
	Kernel    string // empty: BIOS boot from the disk
	Initrd    string
	Cmdline   string
}

// buildDomain returns the domain definition of an instance: GuestDomain named after the
// instance, with the agent's metadata.
func buildDomain(s domainSpec) (*libvirtxml.Domain, error) {
	md, err := xml.Marshal(s.Meta)
	if err != nil {
		return nil, err
	}
	def := GuestDomain(DomainName(s.Meta.ID), s.Guest)
	def.Metadata = &libvirtxml.DomainMetadata{XML: string(md)}
	return def, nil
}

// GuestDomain returns the definition of domain name running g: a virtio disk on the overlay,
// whose backing store is the view with DAC relabelling off and the chain ended explicitly (the
// mount is read-only and owned by the daemon: libvirt must neither chown it nor probe it); the
// serial console to a file; power-off ends the domain. Every instance the agent spawns is
// defined with it; so are the benchmarks' domains of nova's path, to boot the same machine.
func GuestDomain(name string, g Guest) *libvirtxml.Domain {
	os := &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}}
	if g.Kernel != "" {
		os.Kernel, os.Initrd, os.Cmdline = g.Kernel, g.Initrd, g.Cmdline
	} else {
		os.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	port := uint(0)
	return &libvirtxml.Domain{
		Type:       g.VirtType,
		Name:       name,
		Memory:     &libvirtxml.DomainMemory{Value: g.MemoryKiB, Unit: "KiB"},
		VCPU:       &libvirtxml.DomainVCPU{Value: g.VCPUs},
		OS:         os,
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: g.CacheMode},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: g.Disk}},
				BackingStore: &libvirtxml.DomainDiskBackingStore{
					Format: &libvirtxml.DomainDiskFormat{Type: "raw"},
					Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{
						File:     g.Backing,
						SecLabel: []libvirtxml.DomainDeviceSecLabel{{Model: "dac", Relabel: "no"}},
					}},
					BackingStore: &libvirtxml.DomainDiskBackingStore{}, // <backingStore/>: the chain ends here
				},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: g.Console}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
}
