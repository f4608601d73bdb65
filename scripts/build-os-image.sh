#!/usr/bin/env bash
# build-os-image.sh — a real operating system image for the benchmarks and tests: Debian
# bookworm (minbase + systemd, udev, its own kernel and initramfs) that boots to a serial
# `login:` prompt.
#
# Usage: scripts/build-os-image.sh [--check] [OUTDIR]     (default: <repo>/.cache/os-image)
#
# Produces, from Debian's packages only (debootstrap from the mirror /etc/apt/sources.list uses;
# $MIRROR overrides it), without loop devices or mounts of the image (mkfs.ext4 -d):
#   OUTDIR/debian-12.raw     2 GiB ($OS_IMAGE_SIZE) raw ext4 file system, no partition table
#                            (it is /dev/vda itself), sparse; fixed UUID and hash seed
#   OUTDIR/debian-12.qcow2   the same disk as qcow2 (what Glance usually holds)
#   OUTDIR/vmlinuz           the image's own kernel (linux-image-cloud-amd64)
#   OUTDIR/initrd.img        its initramfs (initramfs-tools, virtio_blk and ext4 included)
#   OUTDIR/build.json        build time, sizes (apparent and allocated), kernel, package count
# Boot it by direct kernel boot: -kernel vmlinuz -initrd initrd.img
#   -append "root=/dev/vda ro console=ttyS0" and the raw or qcow2 file as a virtio disk.
# systemd starts serial-getty@ttyS0, which prints "<hostname> login:" ("basefs-os login:").
# root's password is "basefs" (a throwaway test image: no network, nothing listens).
#
# --check boots the raw image once under qemu (TCG, snapshot=on: the image is not written)
# and waits for "login:" on the serial console; it prints the time it took.
#
# Idempotent: OUTDIR/.done records a hash of this script's commands (comments excluded); when
# it matches and the outputs are present the script exits at once, touching nothing (no apt,
# no network). Delete OUTDIR (or .done) to rebuild. Concurrent runs serialise on OUTDIR/.lock.
# Needs root (debootstrap, chroot). Installs debootstrap with apt-get if it is missing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
out=${1:-$repo/.cache/os-image}
size=${OS_IMAGE_SIZE:-2G}
suite=bookworm
hostname=basefs-os
# Fixed file system identity, so two builds from the same packages lay the tree out alike.
fs_uuid=6d0b5a4e-1c1f-4a53-9b0e-8f2c0b5e7a11
hash_seed=2f1c7d3a-5b6e-4c8d-9a0f-1e2d3c4b5a69

log() { echo "build-os-image: $*" >&2; }
# sec START END: seconds between two `date +%s.%N` stamps.
sec() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
die() {
	log "$*"
	exit 1
}

recipe=$( (grep -v '^[[:space:]]*#' "${BASH_SOURCE[0]}"; echo "size=$size") | sha256sum | cut -c1-32)
raw="$out/debian-12.raw"
qcow="$out/debian-12.qcow2"
built() {
	[ -s "$raw" ] && [ -s "$qcow" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] &&
		[ "$(cat "$out/.done" 2>/dev/null)" = "$recipe" ]
}

# boot_check waits for "login:" on the serial console of the raw image booted under TCG.
boot_check() {
	local serial t0 pid
	serial=$(mktemp)
	t0=$(date +%s.%N)
	qemu-system-x86_64 -machine q35 -accel tcg -m 512 -smp 1 -display none -no-reboot \
		-kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
		-append "root=/dev/vda ro console=ttyS0 panic=-1" \
		-drive "file=$raw,if=virtio,format=raw,snapshot=on,cache=unsafe" \
		-serial "file:$serial" -monitor none &
	pid=$!
	for _ in $(seq 1 1800); do
		if grep -q 'login:' "$serial" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			log "boot check: login: after $(sec "$t0" "$(date +%s.%N)") s (TCG)"
			rm -f "$serial"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	log "boot check FAILED: no login: prompt; console tail:"
	tail -c 3000 "$serial" >&2
	rm -f "$serial"
	return 1
}

mkdir -p "$out"
if built; then
	[ "$check" = 0 ] || boot_check
	exit 0
fi
exec 9>"$out/.lock"
flock 9
if built; then # another run finished it while we waited
	[ "$check" = 0 ] || boot_check
	exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

# The Debian mirror this host's apt uses (deb822 URIs: or one-line deb entries), not security.
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' |
		grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
fi
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*; set MIRROR=http://…/debian"

for t in mkfs.ext4 qemu-img chroot flock; do
	command -v "$t" >/dev/null || die "$t is missing"
done
if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends debootstrap >/dev/null ||
		{ apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi

t0=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/build-os-image.XXXXXX")
root="$work/root"
cleanup() {
	# debootstrap mounts proc/sys in the target and unmounts them itself; make sure.
	for m in dev/pts dev sys proc; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap $suite (minbase + systemd, udev, kernel) from $mirror into $work"
include=systemd,systemd-sysv,udev,dbus,kmod,initramfs-tools,zstd,linux-image-cloud-amd64,e2fsprogs,login,passwd,procps,iproute2
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -n 40 "$work/debootstrap.log" >&2; tail -n 40 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }
t_boot=$(date +%s.%N)

# --- configuration ---
echo "$hostname" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$hostname" >"$root/etc/hosts"
printf '# <fs> <mount point> <type> <options> <dump> <pass>\nUUID=%s / ext4 errors=remount-ro 0 1\n' "$fs_uuid" >"$root/etc/fstab"
# A fixed machine id: no first-boot setup, every boot of the image does the same work.
echo 0f6b0d1d2a3b4c5d8e9f00112233a4b5 >"$root/etc/machine-id"
echo 'root:basefs' | chroot "$root" chpasswd
# The initramfs must find /dev/vda: virtio modules listed explicitly (MODULES=most would take
# them too, but a chroot build must not depend on what the build host has loaded).
cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
ext4
EOF
sed -i 's/^MODULES=.*/MODULES=most/' "$root/etc/initramfs-tools/initramfs.conf"
# Nothing that would fire on its own during a measured boot.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
	chroot "$root" systemctl disable "$u" >/dev/null 2>&1 || true
done
krel=$(ls "$root/lib/modules" | sort -V | tail -n1)
[ -n "$krel" ] || die "no kernel modules in the image"
chroot "$root" update-initramfs -u -k "$krel" >"$work/initramfs.log" 2>&1 ||
	{ tail -n 30 "$work/initramfs.log" >&2; die "update-initramfs failed"; }
# The initramfs must carry virtio_blk (as a module) or the kernel must have it built in.
if ! grep -q '/virtio_blk\.ko' "$root/lib/modules/$krel/modules.builtin" 2>/dev/null; then
	chroot "$root" lsinitramfs "/boot/initrd.img-$krel" >"$work/initrd.list" ||
		die "lsinitramfs failed"
	grep -q 'virtio_blk\.ko' "$work/initrd.list" || die "the initramfs has no virtio_blk"
fi
npkgs=$(chroot "$root" dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed')
# Smaller image: no package cache, no apt lists, no logs from the build.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
	"$root"/var/log/*.log "$root"/var/log/apt/* "$root/debootstrap"
mkdir -p "$root/var/lib/apt/lists/partial"

mkdir -p "$work/out"
cp "$root/boot/vmlinuz-$krel" "$work/out/vmlinuz"
cp "$root/boot/initrd.img-$krel" "$work/out/initrd.img"
t_conf=$(date +%s.%N)

# --- the disk: an ext4 file system made from the tree, into a sparse file ---
log "mkfs.ext4 -d ($size)"
truncate -s "$size" "$work/out/debian-12.raw"
mkfs.ext4 -q -F -L root -U "$fs_uuid" -E "hash_seed=$hash_seed" -d "$root" "$work/out/debian-12.raw" >"$work/mkfs.log" 2>&1 ||
	{ cat "$work/mkfs.log" >&2; die "mkfs.ext4 -d failed"; }
t_mkfs=$(date +%s.%N)
qemu-img convert -f raw -O qcow2 "$work/out/debian-12.raw" "$work/out/debian-12.qcow2"
t_qcow=$(date +%s.%N)
chmod 0644 "$work"/out/*

rawsz=$(stat -c %s "$work/out/debian-12.raw")
rawalloc=$(($(stat -c %b "$work/out/debian-12.raw") * $(stat -c %B "$work/out/debian-12.raw")))
qcowsz=$(stat -c %s "$work/out/debian-12.qcow2")
kernsz=$(stat -c %s "$work/out/vmlinuz")
initsz=$(stat -c %s "$work/out/initrd.img")
treesz=$(du -sb "$root" | cut -f1)
cat >"$work/out/build.json" <<EOF
{
  "suite": "$suite",
  "mirror": "$mirror",
  "kernel": "$krel",
  "packages": $npkgs,
  "tree_bytes": $treesz,
  "raw_bytes": $rawsz,
  "raw_allocated_bytes": $rawalloc,
  "qcow2_bytes": $qcowsz,
  "kernel_bytes": $kernsz,
  "initrd_bytes": $initsz,
  "seconds_debootstrap": $(sec "$t0" "$t_boot"),
  "seconds_configure_initramfs": $(sec "$t_boot" "$t_conf"),
  "seconds_mkfs": $(sec "$t_conf" "$t_mkfs"),
  "seconds_qcow2": $(sec "$t_mkfs" "$t_qcow"),
  "seconds_total": $(sec "$t0" "$t_qcow"),
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
for f in debian-12.raw debian-12.qcow2 vmlinuz initrd.img build.json; do
	mv -f "$work/out/$f" "$out/$f"
done
echo "$recipe" >"$out/.done"
log "built in $(sec "$t0" "$t_qcow") s: raw $((rawsz >> 20)) MiB ($((rawalloc >> 20)) MiB allocated), qcow2 $((qcowsz >> 20)) MiB, kernel $krel, initrd $((initsz >> 20)) MiB, $npkgs packages"
[ "$check" = 0 ] || boot_check
