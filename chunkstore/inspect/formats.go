package inspect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// farAway clamps offsets read from a header: past any file, without int64 overflow.
const farAway = int64(1) << 60

func clampOffset(v uint64) int64 {
	if v > uint64(farAway) {
		return farAway
	}
	return int64(v)
}

func allInspectors() []inspector {
	return []inspector{
		&rawInspector{}, newQcow2(), newHeaderOnly("qed", 512), newHeaderOnly("vhd", 512),
		newVHDX(), newVMDK(), newHeaderOnly("vdi", 512), newISO(), newHeaderOnly("gpt", 512),
		newHeaderOnly("luks", 592),
	}
}

var le, be = binary.LittleEndian, binary.BigEndian

// rawInspector is nova's base FileInspector: always complete, always a match, always safe.
type rawInspector struct{ rs regionSet }

func (*rawInspector) name() string          { return "raw" }
func (i *rawInspector) regions() *regionSet { return &i.rs }
func (*rawInspector) after() error          { return nil }
func (*rawInspector) match() bool           { return true }
func (*rawInspector) safety() error         { return nil }

// headerOnly covers the formats recognised from their first bytes: qed, vhd, vdi, gpt, luks.
type headerOnly struct {
	fmtName string
	rs      regionSet
}

func newHeaderOnly(name string, n int64) *headerOnly {
	h := &headerOnly{fmtName: name}
	h.rs.add("header", 0, n)
	return h
}

func (h *headerOnly) name() string        { return h.fmtName }
func (h *headerOnly) regions() *regionSet { return &h.rs }
func (h *headerOnly) after() error        { return nil }

func (h *headerOnly) match() bool {
	r := h.rs.get("header")
	d := r.data
	switch h.fmtName {
	case "qed":
		return r.complete() && bytes.HasPrefix(d, []byte("QED\x00"))
	case "vhd":
		return bytes.HasPrefix(d, []byte("conectix"))
	case "vdi":
		return r.complete() && le.Uint32(d[0x40:]) == 0xbeda107f
	case "gpt":
		// A FAT volume boot record carries the MBR signature too; oslo tells them apart by
		// its BIOS parameter block (two FATs on a fixed disk).
		isFAT := r.complete() && d[0x10] == 2 && d[0x15] == 0xF8
		return r.complete() && le.Uint16(d[510:]) == 0xAA55 && !isFAT
	case "luks":
		return bytes.HasPrefix(d, []byte("LUKS\xba\xbe"))
	}
	return false
}

func (h *headerOnly) safety() error {
	d := h.rs.get("header").data
	switch h.fmtName {
	case "qed":
		return errors.New("QED images are never accepted (nova refuses the format)")
	case "gpt":
		return checkMBR(d)
	case "luks":
		if v := int16(be.Uint16(d[6:])); v != 1 {
			return fmt.Errorf("LUKS version %d is not supported", v)
		}
	}
	return nil
}

// checkMBR is oslo.utils' GPTInspector.check_mbr_partitions.
func checkMBR(d []byte) error {
	var valid []int
	foundGPT := false
	for i := range 4 {
		pte := d[446+16*i : 446+16*i+16]
		boot, ostype := pte[0], pte[4]
		if boot != 0x00 && boot != 0x80 {
			return fmt.Errorf("MBR partition entry %d has an invalid boot flag %#x", i, boot)
		}
		if ostype != 0 {
			valid = append(valid, i)
		}
		if ostype == 0xEE {
			foundGPT = true
			if pte[1] != 0 || pte[2] != 2 || pte[3] != 0 {
				return errors.New("GPT protective MBR has an invalid start CHS")
			}
			if le.Uint32(pte[8:]) != 1 {
				return errors.New("GPT protective MBR has an invalid start LBA")
			}
		}
	}
	if foundGPT && (len(valid) != 1 || valid[0] != 0) {
		return errors.New("GPT protective MBR defines extra partitions")
	}
	if len(valid) == 0 {
		return errors.New("MBR has no partitions defined")
	}
	return nil
}

// qcow2 is nova's QcowInspector.
type qcow2 struct{ rs regionSet }

func newQcow2() *qcow2 {
	q := &qcow2{}
	q.rs.add("header", 0, 512)
	return q
}

func (*qcow2) name() string          { return "qcow2" }
func (q *qcow2) regions() *regionSet { return &q.rs }
func (*qcow2) after() error          { return nil }

func (q *qcow2) match() bool {
	r := q.rs.get("header")
	return r.complete() && bytes.HasPrefix(r.data, []byte("QFI\xfb"))
}

func (q *qcow2) safety() error {
	d := q.rs.get("header").data
	if off := be.Uint64(d[8:]); off != 0 {
		return fmt.Errorf("qcow2 has a backing file (name at offset %d): it would read another file", off)
	}
	feat := d[0x48 : 0x48+8] // incompatible features, big-endian
	if feat[7]&0x04 != 0 {
		return errors.New("qcow2 has an external data file: it would read another file")
	}
	// nova knows bits 0–3 (dirty, corrupt, external data file, compression type); any
	// other bit is a feature it cannot vouch for.
	for i, b := range feat {
		allow := byte(0)
		if i == 7 {
			allow = 0x0F
		}
		if b&^allow != 0 {
			return fmt.Errorf("qcow2 has unknown incompatible feature bits %#x in byte %d", b&^allow, 7-i)
		}
	}
	return nil
}

// iso is nova's ISOInspector (ISO 9660 and UDF).
type iso struct{ rs regionSet }

func newISO() *iso {
	i := &iso{}
	i.rs.add("system_area", 0, 32<<10)
	i.rs.add("header", 32<<10, 2<<10)
	return i
}

func (*iso) name() string          { return "iso" }
func (i *iso) regions() *regionSet { return &i.rs }
func (*iso) after() error          { return nil }
func (*iso) safety() error         { return nil }

func (i *iso) match() bool {
	if !i.rs.complete() {
		return false
	}
	sig := string(i.rs.get("header").data[1:6])
	return sig == "CD001" || sig == "NSR02" || sig == "NSR03"
}

// vmdk is nova's VMDKInspector (monolithicSparse and streamOptimized: a binary header and
// an embedded text descriptor).
type vmdk struct{ rs regionSet }

const (
	vmdkDescOffset  = 0x200
	vmdkDescMaxSize = 1<<20 - 1
)

func newVMDK() *vmdk {
	v := &vmdk{}
	v.rs.add("header", 0, 512)
	return v
}

func (*vmdk) name() string          { return "vmdk" }
func (v *vmdk) regions() *regionSet { return &v.rs }

func (v *vmdk) match() bool {
	return bytes.HasPrefix(v.rs.get("header").data, []byte("KDMV"))
}

func (v *vmdk) after() error {
	h := v.rs.get("header")
	if !h.complete() {
		return nil
	}
	d := h.data
	if string(d[:4]) != "KDMV" {
		return errNoMatch
	}
	if ver := le.Uint32(d[4:]); ver < 1 || ver > 3 {
		return errNoMatch
	}
	if le.Uint64(d[56:]) == ^uint64(0) {
		return errNoMatch // grain directory in a footer: nova cannot stream it and refuses
	}
	descSec, descNum := le.Uint64(d[28:]), le.Uint64(d[36:])
	if descSec != vmdkDescOffset/512 {
		return errNoMatch
	}
	size := int64(vmdkDescMaxSize)
	if descNum < vmdkDescMaxSize/512 {
		size = int64(descNum) * 512
	}
	if !v.rs.has("descriptor") {
		v.rs.add("descriptor", vmdkDescOffset, size)
	}
	return nil
}

// allowedCreateTypes is nova's [compute] vmdk_allowed_types default: the single-file kinds.
var allowedCreateTypes = []string{"monolithicsparse", "streamoptimized"}

func (v *vmdk) safety() error {
	r := v.rs.get("descriptor")
	if r == nil || !r.complete() {
		return errors.New("VMDK descriptor is incomplete")
	}
	desc := bytes.TrimRight(r.data, "\x00")
	for _, c := range desc {
		if c >= 0x80 {
			return &formatError{"VMDK descriptor is not ASCII text"}
		}
	}
	text := strings.ToLower(string(desc))
	var extents []string
	createType := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.Trim(line, pyWhitespace)
		switch {
		case line == "" || strings.HasPrefix(line, "#"), strings.HasPrefix(line, "ddb"):
		case strings.Contains(line, "=") && !strings.Contains(strings.SplitN(line, "=", 2)[0], " "):
			k, val, _ := strings.Cut(line, "=")
			if k == "createtype" {
				createType = strings.Trim(strings.TrimSpace(val), `"`)
			}
		case isExtentAccess(strings.SplitN(line, " ", 2)[0]):
			extents = append(extents, line)
		default:
			return &formatError{fmt.Sprintf("VMDK descriptor has a line nova does not accept: %.60q", line)}
		}
	}
	for _, e := range extents {
		if strings.Contains(e, "/") {
			return fmt.Errorf("VMDK extent %.80q names a path: it would read another file", e)
		}
	}
	if len(extents) == 0 {
		return errors.New("VMDK descriptor names no extents")
	}
	if !contains(allowedCreateTypes, createType) {
		return fmt.Errorf("VMDK createType %.40q is not allowed (only monolithicSparse and streamOptimized: the others read other files)", createType)
	}
	return nil
}

// pyWhitespace is what Python's str.strip() removes from ASCII text.
const pyWhitespace = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"

func isExtentAccess(s string) bool { return s == "rw" || s == "rdonly" || s == "noaccess" }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// formatError is nova's ImageFormatError during the safety check: the content does not
// parse as its format.
type formatError struct{ msg string }

func (e *formatError) Error() string { return e.msg }
