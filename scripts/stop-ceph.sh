#!/usr/bin/env bash
# stop-ceph.sh — stop the one-node Ceph that scripts/start-ceph.sh started for this state
# directory (same environment: BASEFS_CEPH_DIR).
#
#   scripts/stop-ceph.sh        stop radosgw, the OSD and the mon; the state directory stays, but
#                               memstore data is gone (the next start makes a new cluster)
#   scripts/stop-ceph.sh rgw    stop only radosgw: the cluster keeps its data and the next
#                               start-ceph.sh starts radosgw again (an S3 outage, for tests)
#
# Only processes named by this directory's pid files and started with its ceph.conf are
# signalled (TERM, then KILL after 10 s). Stopping what is not running succeeds.
set -euo pipefail

STATE=${BASEFS_CEPH_DIR:-/var/lib/basefs-ceph}
case "$STATE" in /*) ;; *) STATE=$(pwd -P)/$STATE ;; esac
CONF="$STATE/ceph.conf"
RUN="$STATE/run"
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

stop_pidfile() {
	local pid
	[ -s "$RUN/$1.pid" ] || return 0
	pid=$(cat "$RUN/$1.pid" 2>/dev/null || true)
	if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF"; then
		stop_pid "$pid" || { echo "stop-ceph.sh: $1 (pid $pid) did not stop" >&2; exit 1; }
	fi
	rm -f "$RUN/$1.pid"
}

case "${1:-all}" in
rgw) stop_pidfile rgw ;;
all)
	stop_pidfile rgw
	stop_pidfile osd.0
	stop_pidfile mon.a
	;;
*)
	echo "usage: stop-ceph.sh [rgw]" >&2
	exit 2
	;;
esac
