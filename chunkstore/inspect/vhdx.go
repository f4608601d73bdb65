package inspect

import "bytes"

// vhdx is nova's VHDXInspector: the region table at 192 KiB names the metadata region, whose
// table names the virtual disk size item. Every length is nova's bound (64 KiB at most).
type vhdx struct{ rs regionSet }

const vhdxTableMax = 32 * 2048

// The GUIDs as they lie on disk (mixed-endian).
var (
	vhdxMetaRegion = []byte{0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E}
	vhdxDiskSize   = []byte{0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8}
)

func newVHDX() *vhdx {
	v := &vhdx{}
	v.rs.add("ident", 0, 32)
	v.rs.add("header", 192<<10, 64<<10)
	return v
}

func (*vhdx) name() string          { return "vhdx" }
func (v *vhdx) regions() *regionSet { return &v.rs }
func (*vhdx) safety() error         { return nil }

func (v *vhdx) match() bool {
	return bytes.HasPrefix(v.rs.get("ident").data, []byte("vhdxfile"))
}

func (v *vhdx) after() error {
	switch {
	case v.rs.get("header").complete() && !v.rs.has("metadata"):
		d := v.rs.get("header").data
		if le.Uint32(d) != 0x69676572 { // "regi"
			return errNoMatch
		}
		count := le.Uint32(d[8:])
		if count >= 2048 {
			return errNoMatch
		}
		for i := range int(count) {
			e := d[16+i*32 : 16+i*32+32]
			if bytes.Equal(e[:16], vhdxMetaRegion) {
				v.rs.add("metadata", clampOffset(le.Uint64(e[16:])), vhdxTableMax)
				return nil
			}
		}
	case v.rs.has("metadata") && !v.rs.has("vds"):
		m := v.rs.get("metadata")
		d := m.data
		if len(d) < 32 {
			return nil
		}
		if string(d[:8]) != "metadata" {
			return errNoMatch
		}
		count := int(le.Uint16(d[10:]))
		if len(d) < 32+count*32 {
			return nil
		}
		if count >= 2048 {
			return errNoMatch
		}
		for i := range count {
			e := d[32+i*32 : 32+i*32+32]
			if bytes.Equal(e[:16], vhdxDiskSize) {
				itemOff, itemLen := le.Uint32(e[16:]), le.Uint32(e[20:])
				m.length = int64(len(d))
				v.rs.add("vds", m.off+int64(itemOff), min(int64(itemLen), vhdxTableMax))
				return nil
			}
		}
	}
	return nil
}
