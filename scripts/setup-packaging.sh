#!/usr/bin/env bash
# setup-packaging.sh — the tools `make deb` and the packaging tests use. Idempotent.
#
#   dpkg-deb, fakeroot   build the .deb (dpkg is on every Debian host; fakeroot owns files as root)
#   lintian              checks the built package
#   systemd              systemd-analyze verify for the units (PID 1 need not be systemd)
#   prometheus           promtool (test rules) and prometheus (one real scrape in a test):
#                        unpacked from Debian's package into $BASEFS_TOOLS (default
#                        /var/cache/basefs-tools/prometheus), not installed — installing it would
#                        start a Prometheus service on :9090 on this host.
# Prints nothing when everything is there.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "setup-packaging.sh: must run as root (installs packages)" >&2
	exit 1
fi
# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-packaging dpkg-dev fakeroot lintian systemd

tools=${BASEFS_TOOLS:-/var/cache/basefs-tools}/prometheus
if [ ! -x "$tools/usr/bin/promtool" ] || [ ! -x "$tools/usr/bin/prometheus" ]; then
	echo "setup-packaging: unpacking Debian's prometheus into $tools"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get -o DPkg::Lock::Timeout=900 download prometheus >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get -o DPkg::Lock::Timeout=900 download prometheus >/dev/null; })
	rm -rf "$tools.new"
	mkdir -p "$tools.new"
	dpkg-deb -x "$tmp"/prometheus_*.deb "$tools.new"
	rm -rf "$tools"
	mv "$tools.new" "$tools"
fi
