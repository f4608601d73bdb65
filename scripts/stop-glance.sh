#!/usr/bin/env bash
# stop-glance.sh — stop the glance-api that scripts/start-glance.sh started.
#
#   scripts/stop-glance.sh
#
# Uses the same environment as start-glance.sh: BASEFS_GLANCE_DIR (default
# /var/lib/basefs-glance) names the state directory whose glance-api.pid is stopped (SIGTERM, then
# SIGKILL after 10 s). Images, database and configuration stay in the state directory, so a later
# start-glance.sh serves the same images again; remove the directory to start from scratch.
# Prints nothing; exits 0 also when nothing was running.
set -euo pipefail

die() { echo "stop-glance.sh: $*" >&2; exit 1; }
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

STATE=${BASEFS_GLANCE_DIR:-/var/lib/basefs-glance}
PIDFILE="$STATE/glance-api.pid"

[ -s "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
# Only a live glance-api: never kill whatever process reused a stale pid.
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! [ -r "/proc/$pid/cmdline" ] ||
	! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'glance-api'; then
	rm -f "$PIDFILE"
	exit 0
fi

stop_pid "$pid" || die "glance-api (pid $pid) did not stop"
rm -f "$PIDFILE"
