#!/usr/bin/env bash
# build-test-guest.sh — build a tiny real guest that proves what it read from its disk.
#
# Usage: scripts/build-test-guest.sh [OUTDIR]     (default: <repo>/.cache/test-guest)
#
# Produces, from Debian packages only (apt-get download + dpkg -x; nothing is installed):
#   OUTDIR/vmlinuz    Debian bookworm cloud kernel (linux-image-6.1.0-N-cloud-amd64, newest)
#   OUTDIR/initrd.gz  busybox-static + the virtio block modules + an /init that:
#     - prints "BASEFS-GUEST boot" first thing;
#     - prints "BASEFS-GUEST sha256=<hex> bytes=<N>" for the first N bytes of /dev/vda
#       (N = kernel param basefs.readsize=, default the whole device); with basefs.passes=K
#       (K > 1) it first reads them K times, printing "BASEFS-GUEST pass=<i> sha256=…" or
#       "BASEFS-GUEST pass=<i> ioerror …" for each;
#     - writes "BASEFS-MARKER <basefs.marker=, default a random uuid>" at byte offset
#       basefs.markeroffset= (default N) and prints "BASEFS-GUEST marker=<text>" and
#       "BASEFS-GUEST marker-written offset=<off>";
#     - prints "BASEFS-GUEST done" and powers off. Any failure prints
#       "BASEFS-GUEST error <what>" and powers off too.
#   Boot it with: -kernel vmlinuz -initrd initrd.gz -append "console=ttyS0 quiet basefs.readsize=…"
#   and a virtio disk (it becomes /dev/vda). Output goes to /dev/ttyS0.
#
# Idempotent: OUTDIR/.inputs records the package versions and this script's hash, OUTDIR/.fast
# this script's hash and a fingerprint of the apt lists. When .fast matches the script exits at
# once (no apt call); when only .inputs matches it exits after one apt-cache query (~1-2 s).
# Delete OUTDIR (or .inputs) to force a rebuild. Concurrent runs serialise on OUTDIR/.lock.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/.cache/test-guest}
self_sha=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)

# Modules the guest needs for /dev/vda; insmod order is computed from their depends= field.
modules=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk)

log() { echo "build-test-guest: $*" >&2; }
die() { log "$*"; exit 1; }

# One build at a time per OUTDIR (tests may run this concurrently); waiters then take the fast path.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

# Fast path: same script, same apt lists, outputs present -> nothing can have changed.
# (apt-cache takes ~1-2 s here because the package cache is not kept, so skip it when we can.)
lists=/var/lib/apt/lists
eval "$(apt-config shell lists Dir::State::Lists/d)"
fastkey() { echo "script=$self_sha lists=$(ls -l --time-style=+%s "$lists" 2>/dev/null | sha256sum | cut -c1-16)"; }
built() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -f "$out/.inputs" ]; }
if built && [ "$(cat "$out/.fast" 2>/dev/null)" = "$(fastkey)" ]; then
	exit 0
fi

# Resolve the inputs: the newest bookworm cloud kernel (the linux-image-cloud-amd64
# metapackage's dependency, else the highest linux-image-6.1.0-N-cloud-amd64) and busybox-static.
kpkg= kver= bbver=
resolve() {
	local info dep
	info=$(apt-cache show --no-all-versions linux-image-cloud-amd64 busybox-static 2>/dev/null || true)
	dep=$(printf '%s\n' "$info" | grep -oE 'linux-image-6\.1\.0-[0-9]+-cloud-amd64 \(= [^)]+\)' | head -n1 || true)
	bbver=$(printf '%s\n' "$info" | awk '/^Package: /{p=$2} p=="busybox-static" && /^Version: /{print $2; exit}')
	if [ -n "$dep" ]; then
		kpkg=${dep%% *}
		kver=${dep##*= }
		kver=${kver%)}
		return
	fi
	kpkg=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
		grep -E '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | sort -V | tail -n1 || true)
	[ -z "$kpkg" ] || kver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '/^Version: /{print $2; exit}')
}
resolve
if [ -z "$kver" ] || [ -z "$bbver" ]; then
	log "no linux-image-6.1.0-*-cloud-amd64 or busybox-static in the apt lists; running apt-get update"
	apt-get update -qq
	resolve
fi
[ -n "$kver" ] || die "cannot find a linux-image-6.1.0-*-cloud-amd64 package"
[ -n "$bbver" ] || die "cannot find busybox-static"
inputs="kernel=$kpkg=$kver busybox-static=$bbver script=$self_sha"

if built && [ "$(cat "$out/.inputs")" = "$inputs" ]; then
	fastkey >"$out/.fast"
	exit 0 # already built from the same inputs
fi

log "building into $out ($kpkg $kver, busybox-static $bbver)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Download (never install) the two packages. As root, apt's _apt sandbox user cannot write
# into our private temp dir, so keep the download as root.
download() {
	local sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	(cd "$work" && apt-get download -qq "${sandbox[@]}" "$kpkg=$kver" "busybox-static=$bbver" >/dev/null)
}
if ! download; then
	log "apt-get download failed; running apt-get update and retrying"
	apt-get update -qq
	download
fi
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
dpkg -x "$work"/busybox-static_*.deb "$work/busybox"
busybox="$work/busybox/bin/busybox"
[ -x "$busybox" ] || die "busybox-static has no bin/busybox"

kfile=$(ls "$work"/kernel/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$kfile" ] || die "$kpkg has no /boot/vmlinuz-*"
krel=${kfile##*/vmlinuz-}

# --- initramfs tree ---
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
# /dev/console for the kernel to open before /init runs (needs root; the kernel's built-in
# initramfs has one as well, so this is belt and braces).
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

# Copy the modules, decompressed (busybox insmod may not read .ko.xz/.ko.zst/.ko.gz).
# A module missing from the .deb must be built in (modules.builtin); it is then skipped.
declare -A deps=()
present=()
for m in "${modules[@]}"; do
	f=$(find "$work/kernel/lib/modules/$krel" -name "$m.ko" -o -name "$m.ko.*" | head -n1)
	if [ -z "$f" ]; then
		grep -q "/$m\.ko" "$work/kernel/lib/modules/$krel/modules.builtin" 2>/dev/null ||
			die "module $m is neither in $kpkg nor built in"
		log "module $m is built in"
		continue
	fi
	dst="$root/lib/modules/$m.ko"
	case $f in
	*.ko) cp "$f" "$dst" ;;
	*.ko.xz) xz -dc "$f" >"$dst" ;;
	*.ko.zst) zstd -qdc "$f" >"$dst" ;;
	*.ko.gz) gzip -dc "$f" >"$dst" ;;
	*) die "unknown module compression: $f" ;;
	esac
	deps[$m]=$("$busybox" strings "$dst" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ')
	present+=("$m")
done

# Topological order from the modules' own depends= (e.g. virtio needs virtio_ring first).
order=()
declare -A done_=()
while [ "${#order[@]}" -lt "${#present[@]}" ]; do
	progress=0
	for m in "${present[@]}"; do
		[ -z "${done_[$m]:-}" ] || continue
		ready=1
		for d in ${deps[$m]}; do
			[ -n "${deps[$d]+x}" ] || die "module $m needs $d, which is not in the list"
			[ -n "${done_[$d]:-}" ] || ready=0
		done
		if [ "$ready" = 1 ]; then
			order+=("$m")
			done_[$m]=1
			progress=1
		fi
	done
	[ "$progress" = 1 ] || die "module dependency cycle among: ${present[*]}"
done

# --- /init (busybox sh) ---
cat >"$root/init" <<EOF
#!/bin/sh
# Test guest init (generated by scripts/build-test-guest.sh). Kernel $krel.
MODULES="${order[*]}"
EOF
cat >>"$root/init" <<'EOF'
export PATH=/bin
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
if [ -c /dev/ttyS0 ]; then exec </dev/null >/dev/ttyS0 2>&1; fi
echo "BASEFS-GUEST boot"
/bin/busybox --install -s /bin

off() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	while :; do sleep 60; done # never let init exit (that would panic the kernel)
}
fail() { echo "BASEFS-GUEST error $*"; off; }

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
[ -c /dev/null ] || fail "devtmpfs is not mounted on /dev"

# Parameters: basefs.readsize=, basefs.marker=, basefs.markeroffset=, basefs.passes=.
readsize= marker= markeroff= passes=1
for arg in $(cat /proc/cmdline); do
	case $arg in
	basefs.readsize=*) readsize=${arg#*=} ;;
	basefs.passes=*) passes=${arg#*=} ;;
	basefs.marker=*) marker=${arg#*=} ;;
	basefs.markeroffset=*) markeroff=${arg#*=} ;;
	esac
done

for m in $MODULES; do
	insmod /lib/modules/$m.ko || fail "insmod $m"
done

uptime_s() { read -r up _ </proc/uptime; echo "${up%%.*}"; }
deadline=$(($(uptime_s) + 60))
while [ ! -b /dev/vda ]; do
	[ "$(uptime_s)" -lt "$deadline" ] || fail "no /dev/vda after 60 s"
	usleep 100000
done

devsize=$(($(cat /sys/block/vda/size) * 512))
[ -n "$readsize" ] || readsize=$devsize
case $readsize in '' | *[!0-9]*) fail "bad basefs.readsize=$readsize" ;; esac
[ "$readsize" -le "$devsize" ] || fail "basefs.readsize=$readsize exceeds /dev/vda size $devsize"

# dd with 1 MiB blocks: busybox `head -c` reads in small pieces and is ~20x slower under TCG.
set -o pipefail
case $passes in '' | *[!0-9]*) fail "bad basefs.passes=$passes" ;; esac
# basefs.passes=N (N > 1): read the disk N times, one line per pass, going on after an error
# (a test counts them): "BASEFS-GUEST pass=<i> sha256=<hex> bytes=<N>" or "... pass=<i> ioerror".
i=1
while [ "$passes" -gt 1 ] && [ "$i" -le "$passes" ]; do
	echo 3 >/proc/sys/vm/drop_caches
	if psum=$(dd if=/dev/vda bs=1M iflag=count_bytes,fullblock count="$readsize" 2>/tmp/dd.err | sha256sum); then
		echo "BASEFS-GUEST pass=$i sha256=${psum%% *} bytes=$readsize"
	else
		echo "BASEFS-GUEST pass=$i ioerror $(tail -n1 /tmp/dd.err)"
	fi
	i=$((i + 1))
done
sum=$(dd if=/dev/vda bs=1M iflag=count_bytes,fullblock count="$readsize" 2>/tmp/dd.err | sha256sum) ||
	fail "reading /dev/vda: $(tail -n1 /tmp/dd.err)"
echo "BASEFS-GUEST sha256=${sum%% *} bytes=$readsize"

[ -n "$marker" ] || marker=$(cat /proc/sys/kernel/random/uuid)
[ -n "$markeroff" ] || markeroff=$readsize
case $markeroff in *[!0-9]*) fail "bad basefs.markeroffset=$markeroff" ;; esac
text="BASEFS-MARKER $marker"
[ $((markeroff + ${#text})) -le "$devsize" ] || fail "marker at $markeroff does not fit in /dev/vda"
printf '%s' "$text" | dd of=/dev/vda bs=1 seek="$markeroff" conv=notrunc,fsync 2>/dev/null ||
	fail "writing the marker"
sync
# Read it back from the device, not the page cache.
echo 3 >/proc/sys/vm/drop_caches
back=$(dd if=/dev/vda bs=1 skip="$markeroff" count=${#text} 2>/dev/null) || fail "reading the marker back"
[ "$back" = "$text" ] || fail "marker read back as '$back'"
echo "BASEFS-GUEST marker=$text"
echo "BASEFS-GUEST marker-written offset=$markeroff"

echo "BASEFS-GUEST done"
off
EOF
chmod 755 "$root/init"

# --- pack (the host has no cpio: busybox's writes newc) ---
(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$work/initrd.gz"

rm -f "$out/.inputs" "$out/.fast"
cp "$kfile" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
cp "$work/initrd.gz" "$out/initrd.gz.tmp" && mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "basefs test guest: Debian $kpkg ($kver) kernel + busybox initramfs that prints the sha256 of /dev/vda and writes a marker (scripts/build-test-guest.sh)" >"$out/README"
echo "$inputs" >"$out/.inputs"
fastkey >"$out/.fast"
log "done: $out/vmlinuz $out/initrd.gz (kernel $krel; insmod order: ${order[*]})"
