#!/usr/bin/env bash
# setup-host.sh — make this host ready to build, run and test basefs.
#
# Idempotent: installs the Debian packages the project needs (only the missing ones) and starts
# the real components the tests and `make run` use (virtlogd and libvirtd, without systemd).
# Safe to run again and again; does nothing that is already done.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "setup-host.sh: must run as root (installs packages, starts libvirtd)" >&2
	exit 1
fi

pkgs=(
	fuse3            # fusermount3, /etc/fuse.conf
	qemu-utils       # qemu-img: import of any format, overlays
	qemu-system-x86  # the hypervisor (TCG here)
	libvirt-daemon-system libvirt-clients libvirt-dev  # libvirtd, virsh, cgo headers
	nginx-light      # the real static web server behind the http:// origin tests
	fio              # benchmarks
	dosfstools       # mkfs.vfat: nova's default ephemeral disk format when the image has no os_type
	pkg-config
	python3 python3-nova python3-libvirt  # Debian's /usr/bin/python3 and nova's own code, run by the nova tests (scripts/nova-driver.py) with Debian's /usr/bin/python3
	e2fsprogs util-linux mount    # mkfs.ext4; mkswap, flock: nova's ephemeral and swap disks in the nova tests; prlimit: qemu-img under nova's limits; mount: the bomb test's tmpfs; nsenter, setsid: scripts/fleet.sh
	iproute2                      # ip, tc: scripts/fleet.sh's namespaces, bridge, veth links and their shaping
	curl                          # health checks in the start scripts
	passwd                        # useradd, userdel: the unprivileged local users of the access tests
)

# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-host "${pkgs[@]}"

# FUSE: allow_other works as root with an empty /etc/fuse.conf; make sure the device exists.
[ -e /dev/fuse ] || { echo "setup-host: /dev/fuse is missing: this host cannot mount FUSE" >&2; exit 1; }

# Without udev, /dev/kvm is root-only; libvirtd then re-probes qemu on every domain definition
# (30-40 s each). Debian's udev rule makes it group kvm, mode 0660; do the same. (KVM itself
# is not usable on these machines: domains use TCG, virt type qemu.)
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
	chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# libvirtd without systemd (HOST-NOTES): virtlogd first, or domain starts fail.
mkdir -p /var/log/libvirt /run/libvirt /var/lib/libvirt
if ! pgrep -x virtlogd >/dev/null; then
	virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
	libvirtd -d
fi
for _ in $(seq 1 50); do
	if virsh -c qemu:///system version >/dev/null 2>&1; then
		exit 0
	fi
	sleep 0.2
done
echo "setup-host: libvirtd did not answer on qemu:///system within 10 s (see /var/log/libvirt)" >&2
exit 1
