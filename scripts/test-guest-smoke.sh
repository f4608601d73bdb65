#!/usr/bin/env bash
# test-guest-smoke.sh — prove the test guest (scripts/build-test-guest.sh) works, without libvirt.
#
# Usage: scripts/test-guest-smoke.sh [GUESTDIR]     (default: <repo>/.cache/test-guest)
#
# Builds the guest if needed, makes a 64 MiB raw base image (16 MiB random + zeros) and boots
# the guest twice under qemu TCG on a qcow2 overlay (80 MiB, larger than the base, like nova's):
#   1. defaults: marker text from the guest (a uuid), written right after the read region;
#   2. basefs.marker= and basefs.markeroffset= inside the base's random data (unaligned).
# Each boot must print the base's sha256, write its marker into the overlay, and leave the base
# unchanged. Prints the times (from qemu start) to the first console line, to the sha256 line and
# to power-off. Exit 0 = pass; on failure the work directory is kept and its path printed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guest=${1:-$repo/.cache/test-guest}
timeout_s=120

"$repo/scripts/build-test-guest.sh" "$guest"

work=$(mktemp -d)
ok=0
trap '[ "$ok" = 1 ] && rm -rf "$work" || echo "smoke: FAILED; files kept in $work" >&2' EXIT
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

base=$work/base.raw
head -c 16M /dev/urandom >"$base"
truncate -s 64M "$base"
size=$(stat -c %s "$base")
want=$(sha256sum "$base" | cut -d' ' -f1)

# boot NAME EXTRA-CMDLINE: boot on a fresh overlay; leaves $work/NAME.{qcow2,log}.
boot() {
	local name=$1 extra=$2 ov=$work/$1.qcow2 log=$work/$1.log t0 first= hashed= pid now
	qemu-img create -q -f qcow2 -F raw -b "$base" "$ov" 80M
	: >"$log"
	t0=$EPOCHREALTIME
	qemu-system-x86_64 -machine accel=tcg -m 256 -display none -monitor none -no-reboot \
		-kernel "$guest/vmlinuz" -initrd "$guest/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1 basefs.readsize=$size $extra" \
		-drive "file=$ov,if=virtio,format=qcow2" -serial "file:$log" &
	pid=$!
	# Poll the console while qemu runs (times of the first and the sha256 lines); kill it at
	# the deadline.
	while kill -0 "$pid" 2>/dev/null; do
		now=$EPOCHREALTIME
		if [ -z "$first" ] && grep -q 'BASEFS-GUEST boot' "$log"; then
			first=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
		fi
		if [ -z "$hashed" ] && grep -q 'BASEFS-GUEST sha256=' "$log"; then
			hashed=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
		fi
		if awk -v a="$t0" -v b="$now" -v t="$timeout_s" 'BEGIN { exit !(b - a > t) }'; then
			kill "$pid"
			wait "$pid" || true
			cat "$log" >&2
			fail "$name: no power-off within ${timeout_s} s"
		fi
		sleep 0.05
	done
	wait "$pid" || fail "$name: qemu exited with status $?"
	total=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	tr -d '\r' <"$log" >"$log.txt"
	echo "smoke: $name: first console line after ${first:-?} s, sha256 line after ${hashed:-?} s, power-off after $total s"
}

# check NAME OFFSET [MARKER]: console lines, marker in the overlay, base unchanged.
check() {
	local name=$1 off=$2 marker=${3:-} log=$work/$1.log.txt got
	grep -q '^BASEFS-GUEST error' "$log" && { cat "$log" >&2; fail "$name: guest reported an error"; }
	grep -qx "BASEFS-GUEST sha256=$want bytes=$size" "$log" || { cat "$log" >&2; fail "$name: wrong or missing sha256 line"; }
	grep -qx "BASEFS-GUEST marker-written offset=$off" "$log" || { cat "$log" >&2; fail "$name: no marker-written line"; }
	grep -qx 'BASEFS-GUEST done' "$log" || { cat "$log" >&2; fail "$name: no done line"; }
	[ -n "$marker" ] || marker=$(sed -n 's/^BASEFS-GUEST marker=BASEFS-MARKER //p' "$log")
	[ -n "$marker" ] || fail "$name: guest did not print its marker"
	want_text="BASEFS-MARKER $marker"
	qemu-img convert -O raw "$work/$name.qcow2" "$work/$name.flat"
	got=$(dd if="$work/$name.flat" iflag=skip_bytes,count_bytes skip="$off" count=${#want_text} 2>/dev/null)
	[ "$got" = "$want_text" ] || fail "$name: overlay has '$got' at $off, want '$want_text'"
	[ "$(sha256sum "$base" | cut -d' ' -f1)" = "$want" ] || fail "$name: the base image changed"
	rm -f "$work/$name.flat"
	echo "smoke: $name: ok (sha256 ${want:0:16}…, marker '$want_text' at $off in the overlay, base unchanged)"
}

boot default ""
check default "$size"

off=$((1048576 + 123))
marker="smoke-$$-$RANDOM"
boot explicit "basefs.marker=$marker basefs.markeroffset=$off"
check explicit "$off" "$marker"

ok=1
echo "smoke: PASS"
