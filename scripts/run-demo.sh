#!/usr/bin/env bash
# run-demo.sh — the main job end to end on the embedded default (a dir:// origin):
# build a tiny real guest, make a test image and import it into an origin, mount _base with an
# empty local state, spawn the guest from the lazily fetched, verified base, restart the daemon
# under it, show its console, show what was fetched, terminate it. `make run` runs this after setup and build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
work=${BASEFS_DEMO_DIR:-$top/.cache/demo}
id=demo
guest=$top/.cache/test-guest

say() { printf '\n== %s\n' "$*"; }

cleanup() {
	"$bin/basefs-agent" terminate --instance "$id" --instances-path "$work/instances" >/dev/null 2>&1 || true
	if [ -n "${daemon:-}" ] && kill -0 "$daemon" 2>/dev/null; then
		kill -TERM "$daemon"
		wait "$daemon" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# A previous run's daemon or instance, if any.
"$bin/basefs-agent" terminate --instance "$id" --instances-path "$work/instances" >/dev/null 2>&1 || true
pkill -f "basefs mount --state $work/state" 2>/dev/null || true
umount -l "$work/instances/_base" 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work/instances/_base"
chmod 755 "$top/.cache" "$work" "$work/instances" # qemu runs as libvirt-qemu

say "building the test guest (Debian cloud kernel + busybox initramfs)"
"$top/scripts/build-test-guest.sh" "$guest" >/dev/null
cp "$guest/vmlinuz" "$guest/initrd.gz" "$work/"
chmod 644 "$work/vmlinuz" "$work/initrd.gz"

say "making a 32 MiB test image (8 MiB of data, the rest zeros) as qcow2"
head -c 8M /dev/urandom > "$work/image.raw"
truncate -s 32M "$work/image.raw"
qemu-img convert -f raw -O qcow2 "$work/image.raw" "$work/image.qcow2"
size=$(stat -c %s "$work/image.raw")
echo "sha256 of the image: $(sha256sum < "$work/image.raw" | cut -d' ' -f1)"

say "importing it into the origin dir://$work/origin"
digest=$("$bin/basefs" import --state "$work/origin" "$work/image.qcow2" | tail -n 1)
echo "image digest: $digest"

say "mounting _base at $work/instances/_base (empty local state $work/state)"
"$bin/basefs" mount --state "$work/state" --origin "dir://$work/origin" "$work/instances/_base" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 100); do
	"$bin/basefs" status --base "$work/instances/_base" >/dev/null 2>&1 && break
	sleep 0.1
done
"$bin/basefs" status --base "$work/instances/_base" >/dev/null

say "spawning instance $id (TCG) from the cold image: nothing is local yet"
"$bin/basefs-agent" spawn --instance "$id" --image "$digest" --disk-size 1G --virt-type qemu \
	--kernel "$work/vmlinuz" --initrd "$work/initrd.gz" --kernel-dir "$work" \
	--cmdline "console=ttyS0 quiet panic=-1 basefs.readsize=$size" \
	--instances-path "$work/instances" --base "$work/instances/_base"

say "restarting the daemon under the running guest (it must not notice)"
"$bin/basefs" restart "$work/instances/_base"

say "the guest's console ($work/instances/$id/console.log)"
for _ in $(seq 1 600); do
	grep -q 'BASEFS-GUEST \(done\|error\)' "$work/instances/$id/console.log" 2>/dev/null && break
	sleep 0.2
done
grep 'BASEFS-GUEST' "$work/instances/$id/console.log" || { echo "the guest printed nothing"; exit 1; }
want=$(sha256sum < "$work/image.raw" | cut -d' ' -f1)
if grep -q "BASEFS-GUEST sha256=$want" "$work/instances/$id/console.log"; then
	echo "OK: the guest read exactly the image's bytes (sha256 $want)"
else
	echo "FAIL: the guest's sha256 differs from the image's ($want)"
	exit 1
fi

say "what the daemon fetched"
"$bin/basefs" status --base "$work/instances/_base"

say "terminating $id"
"$bin/basefs-agent" terminate --instance "$id" --instances-path "$work/instances"
