#!/usr/bin/env bash
# fleet.sh — a fleet of basefs hosts on this one machine, for tests and benchmarks: each host is a
# network namespace with its own address on a bridge, its own basefs daemon, state and mount.
#
#   eval "$(scripts/fleet.sh up N)"   make (or keep) N hosts; print what callers need (below)
#   scripts/fleet.sh down             remove every host, link, proxy, mount and the bridge
#   scripts/fleet.sh kill I           SIGKILL every process of host I (a host dying at once)
#
# Layout (NET=BASEFS_FLEET_NET, P=BASEFS_FLEET_PREFIX):
#   bridge ${P}br in the root namespace, address NET.1/24
#   host I (1…N): namespace ${P}hI, veth ${P}vI (root side, on the bridge) ↔ eth0 (inside),
#     address NET.(10+I); each direction of its link shaped by tc tbf to BASEFS_FLEET_HOST_RATE
#   the daemon of host I: `basefs mount` run with nsenter in the host's network namespace only
#     (its mount is seen from the root namespace), state DIR/hI/state, mount DIR/hI/mnt, log
#     DIR/hI/log; peers (when BASEFS_FLEET_PEERS=1) on NET.(10+I):7947, gossip :7946, all
#     joining host 1, the fleet secret in DIR/secret (made once, 0600)
#   the shared tier: a shaper (basefs-bench shaper) on NET.1:BASEFS_FLEET_TIER_PORT forwarding to
#     BASEFS_FLEET_TIER_URL (Ceph RGW on loopback, scripts/start-ceph.sh) over one link of
#     BASEFS_FLEET_TIER_RATE bits/s with BASEFS_FLEET_TIER_LATENCY added (netem is not in this
#     kernel: latency is added in user space); GET NET.1:PORT/.basefs-shaper/stats counts it
#   Glance (optional): the same on NET.1:BASEFS_FLEET_GLANCE_PORT to BASEFS_FLEET_GLANCE_URL
#     (scripts/start-glance.sh), unshaped unless BASEFS_FLEET_GLANCE_RATE is set
#
# Environment (defaults in brackets):
#   BASEFS_FLEET_DIR [/var/lib/basefs-fleet]  BASEFS_FLEET_PREFIX [bfs]  BASEFS_FLEET_NET [10.77.0]
#   BASEFS_FLEET_BIN   directory with basefs and basefs-bench [built from this tree into DIR/bin]
#   BASEFS_FLEET_ORIGIN  the daemons' shared tier, e.g. s3://bucket (AWS_* credentials pass through)
#   BASEFS_FLEET_TIER_URL [none: no tier]  _TIER_PORT [7480]  _TIER_RATE [1000000000]  _TIER_LATENCY [1ms]
#   BASEFS_FLEET_GLANCE_URL [none]  _GLANCE_PORT [9292]  _GLANCE_RATE [0: unlimited]
#   BASEFS_FLEET_HOST_RATE [10gbit]  BASEFS_FLEET_PEERS [1]  BASEFS_FLEET_PEER_TIMEOUT [2s]
#   BASEFS_FLEET_ARGS  more daemon flags (after the fleet's own, so they win)
#
# `up` prints, one per line, for eval: FLEET_N, FLEET_MOUNTS, FLEET_STATES, FLEET_IPS (space
# separated, host 1 first), FLEET_TIER (the tier shaper's URL), FLEET_GLANCE, FLEET_DIR. It is
# idempotent: when a fleet of the same settings is up and every daemon runs, it only prints;
# otherwise it takes down what is there and makes the fleet anew. A failure on the way takes
# everything down again (nothing half made stays). Progress and errors go to stderr.
set -euo pipefail

die() { echo "fleet.sh: $*" >&2; exit 1; }
say() { echo "fleet.sh: $*" >&2; }
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=lib/proc.sh
. "$HERE/lib/proc.sh"

DIR=${BASEFS_FLEET_DIR:-/var/lib/basefs-fleet}
P=${BASEFS_FLEET_PREFIX:-bfs}
NET=${BASEFS_FLEET_NET:-10.77.0}
BR=${P}br
BRIP=$NET.1
TIER_PORT=${BASEFS_FLEET_TIER_PORT:-7480}
GLANCE_PORT=${BASEFS_FLEET_GLANCE_PORT:-9292}
[[ "$P" =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "BASEFS_FLEET_PREFIX=$P: want 1–6 lower-case letters and digits (interface names are short)"
[[ "$NET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "BASEFS_FLEET_NET=$NET: want the first three numbers of a /24, e.g. 10.77.0"
case "$DIR" in /*) ;; *) DIR=$(pwd -P)/$DIR ;; esac

ns() { echo "${P}h$1"; }
hostip() { echo "$NET.$((10 + $1))"; }

# hosts: the host numbers that exist now (namespaces of this prefix).
hosts() { ip netns list 2>/dev/null | sed -n "s/^${P}h\([0-9]\+\)\b.*/\1/p" | sort -n; }

stop_host() { # $1: host number; its daemon, every process left in its namespace, its mount
	local i=$1 pid n
	if [ -f "$DIR/h$i/pid" ]; then
		pid=$(cat "$DIR/h$i/pid")
		if [ -n "$pid" ] && grep -q basefs "/proc/$pid/cmdline" 2>/dev/null; then stop_pid "$pid" || true; fi
		rm -f "$DIR/h$i/pid"
	fi
	n=$(ns "$i")
	if ip netns list | grep -qw "$n"; then
		for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	fi
	if grep -q " $DIR/h$i/mnt " /proc/mounts; then
		fusermount3 -u -z "$DIR/h$i/mnt" 2>/dev/null || umount -l "$DIR/h$i/mnt" 2>/dev/null || true
	fi
}

stop_proxy() { # $1: name (tier, glance)
	local pid
	[ -f "$DIR/$1.pid" ] || return 0
	pid=$(cat "$DIR/$1.pid")
	if [ -n "$pid" ] && grep -q basefs-bench "/proc/$pid/cmdline" 2>/dev/null; then stop_pid "$pid" || true; fi
	rm -f "$DIR/$1.pid"
}

down() {
	local i
	for i in $(hosts); do
		stop_host "$i"
		ip netns del "$(ns "$i")" 2>/dev/null || true
		ip link del "${P}v$i" 2>/dev/null || true
	done
	# Hosts whose namespace went but whose state is left (a killed fleet.sh).
	for i in $(ls "$DIR" 2>/dev/null | sed -n 's/^h\([0-9]\+\)$/\1/p'); do stop_host "$i"; done
	stop_proxy tier
	stop_proxy glance
	ip link del "$BR" 2>/dev/null || true
	rm -f "$DIR/config"
}

bin() { # the binaries: given, or built from this tree
	if [ -n "${BASEFS_FLEET_BIN:-}" ]; then
		[ -x "$BASEFS_FLEET_BIN/basefs" ] && [ -x "$BASEFS_FLEET_BIN/basefs-bench" ] ||
			die "BASEFS_FLEET_BIN=$BASEFS_FLEET_BIN holds no basefs and basefs-bench"
		echo "$BASEFS_FLEET_BIN"
		return
	fi
	say "building basefs and basefs-bench into $DIR/bin"
	(cd "$HERE/.." && GOFLAGS="${GOFLAGS:-} -tags=netgo,osusergo" go build -o "$DIR/bin/" ./cmd/basefs ./cmd/basefs-bench) >&2
	echo "$DIR/bin"
}

start_proxy() { # $1 name, $2 upstream URL, $3 port, $4 bits/s, $5 latency
	local out=$DIR/$1.log
	setsid "$BIN/basefs-bench" shaper --listen "$BRIP:$3" --upstream "$2" --bandwidth "$4" --latency "$5" >"$out" 2>&1 </dev/null &
	echo $! >"$DIR/$1.pid"
	for _ in $(seq 100); do
		grep -q '^listening' "$out" && return 0
		kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null || break
		sleep 0.1
	done
	die "the $1 link's shaper did not start: $(tail -3 "$out")"
}

print_env() {
	local i mounts="" states="" ips=""
	for i in $(seq "$1"); do
		mounts+="$DIR/h$i/mnt " states+="$DIR/h$i/state " ips+="$(hostip "$i") "
	done
	printf 'FLEET_N=%s\nFLEET_MOUNTS="%s"\nFLEET_STATES="%s"\nFLEET_IPS="%s"\nFLEET_DIR=%s\n' "$1" "${mounts% }" "${states% }" "${ips% }" "$DIR"
	printf 'FLEET_TIER=%s\nFLEET_GLANCE=%s\n' \
		"$([ -n "${BASEFS_FLEET_TIER_URL:-}" ] && echo "http://$BRIP:$TIER_PORT")" \
		"$([ -n "${BASEFS_FLEET_GLANCE_URL:-}" ] && echo "http://$BRIP:$GLANCE_PORT")"
}

healthy() { # $1: N; every daemon of the recorded fleet runs and its mount is there
	local i pid
	[ "$(hosts | wc -l)" = "$1" ] || return 1
	for i in $(seq "$1"); do
		pid=$(cat "$DIR/h$i/pid" 2>/dev/null) || return 1
		kill -0 "$pid" 2>/dev/null && grep -q " $DIR/h$i/mnt fuse" /proc/mounts || return 1
	done
}

up() {
	local n=$1 i ip v peers=${BASEFS_FLEET_PEERS:-1}
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up $n: want 1 to 200 hosts"
	[ "$(id -u)" = 0 ] || die "needs root (namespaces, links, FUSE mounts)"
	local config
	config=$(printf '%s\n' "$n" "${BASEFS_FLEET_BIN:-}" "${BASEFS_FLEET_ORIGIN:-}" "${BASEFS_FLEET_TIER_URL:-}" \
		"${BASEFS_FLEET_TIER_RATE:-}" "${BASEFS_FLEET_TIER_LATENCY:-}" "${BASEFS_FLEET_GLANCE_URL:-}" \
		"${BASEFS_FLEET_HOST_RATE:-}" "$peers" "${BASEFS_FLEET_PEER_TIMEOUT:-}" "${BASEFS_FLEET_ARGS:-}" "$NET")
	if [ "$(cat "$DIR/config" 2>/dev/null)" = "$config" ] && healthy "$n"; then
		print_env "$n"
		return
	fi
	down
	trap 'rc=$?; if [ $rc != 0 ]; then say "failed: taking the fleet down"; down; fi' EXIT
	mkdir -p "$DIR"
	BIN=$(bin)
	[ -f "$DIR/secret" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/secret")
	ip link add "$BR" type bridge
	ip addr add "$BRIP/24" dev "$BR"
	ip link set "$BR" up
	if [ -n "${BASEFS_FLEET_TIER_URL:-}" ]; then
		start_proxy tier "$BASEFS_FLEET_TIER_URL" "$TIER_PORT" "${BASEFS_FLEET_TIER_RATE:-1000000000}" "${BASEFS_FLEET_TIER_LATENCY:-1ms}"
	fi
	if [ -n "${BASEFS_FLEET_GLANCE_URL:-}" ]; then
		start_proxy glance "$BASEFS_FLEET_GLANCE_URL" "$GLANCE_PORT" "${BASEFS_FLEET_GLANCE_RATE:-0}" 0s
	fi
	local rate=${BASEFS_FLEET_HOST_RATE:-10gbit}
	for i in $(seq "$n"); do
		v=${P}v$i ip=$(hostip "$i")
		ip netns add "$(ns "$i")"
		ip link add "$v" type veth peer name "${P}e$i"
		ip link set "${P}e$i" netns "$(ns "$i")"
		ip link set "$v" master "$BR" up
		ip -n "$(ns "$i")" link set "${P}e$i" name eth0
		ip -n "$(ns "$i")" addr add "$ip/24" dev eth0
		ip -n "$(ns "$i")" link set eth0 up
		ip -n "$(ns "$i")" link set lo up
		# Both directions of the host's link: into the host (the root side's egress) and out.
		tc qdisc replace dev "$v" root tbf rate "$rate" burst 4mb latency 50ms
		tc -n "$(ns "$i")" qdisc replace dev eth0 root tbf rate "$rate" burst 4mb latency 50ms
	done
	for i in $(seq "$n"); do
		local h=$DIR/h$i args=()
		rm -rf "$h"
		mkdir -p "$h/state" "$h/mnt" "$h/instances"
		args=(mount --state "$h/state" --instances-path "$h/instances" --fill-rate 0 --scrub-rate 0
			--profile-window 0 --manager-interval 0 --memory-cache $((32 << 20)))
		[ -n "${BASEFS_FLEET_ORIGIN:-}" ] && args+=(--origin "$BASEFS_FLEET_ORIGIN")
		[ -n "${BASEFS_FLEET_TIER_URL:-}" ] && args+=(--s3-endpoint "http://$BRIP:$TIER_PORT")
		[ -n "${BASEFS_FLEET_GLANCE_URL:-}" ] && args+=(--glance-endpoint "http://$BRIP:$GLANCE_PORT")
		if [ "$peers" = 1 ]; then
			args+=(--peer-addr "$(hostip "$i"):7947" --peer-secret-file "$DIR/secret"
				--peer-timeout "${BASEFS_FLEET_PEER_TIMEOUT:-2s}")
			[ "$i" -gt 1 ] && args+=(--peer-join "$(hostip 1):7946")
		fi
		# shellcheck disable=SC2206 # BASEFS_FLEET_ARGS is a list of flags
		args+=(${BASEFS_FLEET_ARGS:-} "$h/mnt")
		setsid nsenter --net="/run/netns/$(ns "$i")" -- "$BIN/basefs" "${args[@]}" >"$h/log" 2>&1 </dev/null &
		echo $! >"$h/pid"
	done
	for i in $(seq "$n"); do
		local ok=
		for _ in $(seq 300); do
			if grep -q " $DIR/h$i/mnt fuse" /proc/mounts; then ok=1 && break; fi
			kill -0 "$(cat "$DIR/h$i/pid")" 2>/dev/null || break
			sleep 0.1
		done
		[ -n "$ok" ] || die "host $i's daemon did not mount: $(tail -5 "$DIR/h$i/log")"
	done
	trap - EXIT
	echo "$config" >"$DIR/config"
	say "up: $n hosts on $BR ($NET.0/24), peers $([ "$peers" = 1 ] && echo on || echo off)"
	print_env "$n"
}

case "${1:-}" in
up) [ $# = 2 ] || die "usage: fleet.sh up N"; up "$2" ;;
down)
	down
	rm -rf "$DIR"/h[0-9]* "$DIR"/*.log
	;;
kill)
	[ $# = 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || die "usage: fleet.sh kill I"
	for pid in $(ip netns pids "$(ns "$2")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	say "host $2's processes killed"
	;;
*) die "usage: fleet.sh up N | down | kill I" ;;
esac
