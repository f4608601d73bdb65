#!/usr/bin/env bash
# stop-openstack.sh — stop the OpenStack services that scripts/start-openstack.sh started.
#
#   scripts/stop-openstack.sh                 stop every service (nova-compute first, the database last)
#   scripts/stop-openstack.sh SERVICE...      stop only these, e.g. `nova-compute` before (re)mounting
#                                             $INSTANCES/_base, then start-openstack.sh again
#
# SERVICE is one of: nova-compute nova-scheduler nova-conductor nova-api neutron placement glance
# keystone mariadb rabbitmq epmd.
#
# Uses the same environment as start-openstack.sh: BASEFS_OPENSTACK_DIR (default
# /var/lib/basefs-openstack) names the state directory whose run/NAME.pid files are stopped:
# SIGTERM, then after 30 s SIGKILL to the service's process group (each service runs in its own
# session). A pid file is acted on only if it names a live process that this state directory's
# start-openstack.sh started (its command line names a path under the state directory, or its
# environment carries BASEFS_OPENSTACK_SERVICE=NAME@STATE), never whatever reused a stale pid.
#
# What stays: every database, image, key, configuration and instance directory in the state
# directory, so a later start-openstack.sh brings the same cloud back (remove the directory to start
# from scratch). Libvirt domains of servers are not touched (as when nova-compute stops in any
# cloud): delete servers with `openstack server delete` first if they should go.
# Prints one line per service stopped to stderr; exits 0 also when nothing was running.
set -euo pipefail

die() { echo "stop-openstack.sh: $*" >&2; exit 1; }
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

STATE=${BASEFS_OPENSTACK_DIR:-/var/lib/basefs-openstack}
case "$STATE" in /*) ;; *) STATE=$(pwd -P)/$STATE ;; esac
ALL=(nova-compute nova-scheduler nova-conductor nova-api neutron placement glance keystone mariadb rabbitmq epmd)

if [ "$#" -gt 0 ]; then
	for s in "$@"; do
		case " ${ALL[*]} " in *" $s "*) ;; *) die "unknown service '$s' (one of: ${ALL[*]})" ;; esac
	done
	WANT=("$@")
else
	WANT=("${ALL[@]}")
fi
[ -d "$STATE/run" ] || exit 0

ours() { # NAME PID
	[[ "$2" =~ ^[0-9]+$ ]] && [ -r "/proc/$2/cmdline" ] && alive "$2" || return 1
	tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null | grep -qF -- "$STATE/" && return 0
	tr '\0' '\n' <"/proc/$2/environ" 2>/dev/null | grep -qxF "BASEFS_OPENSTACK_SERVICE=$1@$STATE"
}

# In the order of ALL, whatever order they were named in.
for s in "${ALL[@]}"; do
	case " ${WANT[*]} " in *" $s "*) ;; *) continue ;; esac
	f="$STATE/run/$s.pid"
	[ -s "$f" ] || continue
	pid=$(cat "$f" 2>/dev/null || true)
	if ! ours "$s" "$pid"; then
		rm -f "$f" "$STATE/run/$s.conf-hash"
		continue
	fi
	# RabbitMQ's wrapper answers SIGTERM with `rabbitmqctl stop`: give its node the time
	# (30 s), then SIGKILL its process group.
	stop_pid "$pid" 30 TERM group || die "$s (pid $pid) did not stop, even on SIGKILL"
	# Workers that outlived their master (uWSGI, oslo.service, RabbitMQ's beam), if any: same
	# process group, which is the session start-openstack.sh gave the service.
	if pgrep -g "$pid" >/dev/null 2>&1; then
		sleep 1
		pkill -KILL -g "$pid" 2>/dev/null || true
	fi
	rm -f "$f" "$STATE/run/$s.conf-hash"
	echo "stop-openstack.sh: stopped $s" >&2
done
exit 0
