package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestNovaSpawnBootsGuest: nova's own Qcow2.cache() makes the overlay of a Glance image the
// host has never seen on the basefs `_base`; a real guest (libvirt, TCG) boots on that overlay
// with a domain XML as nova writes it (no relabel='no': libvirt's DAC driver relabels the
// backing file), reads its disk through the mount, and prints the right checksum. The bytes
// Glance served are what the guest read, not the image.
func TestNovaSpawnBootsGuest(t *testing.T) {
	agenttest.Need(t)
	guest := agenttest.GuestDir(t)
	e := newNovaEnv(t, 86400, "--fill-rate", "0") // only what is read: no background fill
	for p := e.dir; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755) // qemu runs as libvirt-qemu
	}
	// 4 MiB of data the guest reads, then 60 MiB it never reads.
	const readBytes, size = 4 << 20, 64 << 20
	data := append(storetest.Data(77, readBytes), storetest.Data(78, size-readBytes)...)
	raw := filepath.Join(e.dir, "guest-disk.raw")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	id := glancetest.Upload(t, t.Name(), "raw", "bare", raw)
	uuid := newUUID(t)
	start := time.Now()
	r := e.nova("cache", "--backend", "qcow2", "--image-id", id, "--instance-uuid", uuid, "--size", strconv.Itoa(1<<30))
	if r.FetchCalled {
		t.Fatal("nova downloaded the image itself")
	}
	if r.BackingFile != filepath.Join(e.mnt, novaName(id)) {
		t.Fatalf("nova's overlay is backed by %q", r.BackingFile)
	}
	console := filepath.Join(e.inst, uuid, "console.log")
	name := "basefs-nova-" + uuid[:8]
	xml := fmt.Sprintf(`<domain type='%s'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>
<on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='%s'/><target port='0'/></serial><console type='file'><source path='%s'/><target type='serial' port='0'/></console></devices></domain>`,
		agenttest.VirtType(), name, uuid, filepath.Join(guest, "vmlinuz"), filepath.Join(guest, "initrd.gz"),
		agenttest.Cmdline(readBytes, size, "nova"), r.Disk, console, console)
	defineDomain(t, e.dir, name, xml)
	if out, err := virsh("start", name); err != nil {
		t.Fatalf("virsh start: %v\n%s", err, out)
	}
	sum := sha256.Sum256(data[:readBytes])
	want := fmt.Sprintf("BASEFS-GUEST sha256=%s bytes=%d", hex.EncodeToString(sum[:]), readBytes)
	line, at := agenttest.WaitConsole(t, console, "BASEFS-GUEST sha256=", 3*time.Minute)
	if line != want {
		t.Fatalf("guest read %q, want %q", line, want)
	}
	agenttest.WaitConsole(t, console, "BASEFS-GUEST done", time.Minute)
	_, fetched, _ := glanceOrigin(e.d.status())
	t.Logf("nova cache() + boot to the guest's checksum: %.1f s; Glance served %d bytes of a %d-byte image (the guest read %d)",
		at.Sub(start).Seconds(), fetched, size, readBytes)
	if fetched > size/2 {
		t.Fatalf("Glance served %d bytes for a guest that read %d of %d: not lazy", fetched, readBytes, size)
	}
}
