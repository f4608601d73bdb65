#!/usr/bin/env bash
# start-openstack.sh — a small all-in-one OpenStack (Zed, Debian bookworm packages) on 127.0.0.1,
# without systemd: Keystone, Glance (Keystone auth), Placement, Nova (api, conductor, scheduler,
# compute with the libvirt driver, TCG), a minimal Neutron, RabbitMQ and MariaDB. The real cloud
# behind basefs as nova's instances/_base.
#
#   eval "$(scripts/start-openstack.sh)"   install what is missing, configure, start, wait; prints
#                                          the admin's OS_* settings as export lines
#   scripts/stop-openstack.sh [SERVICE...] stop it (or only the named services)
#
# Environment:
#   BASEFS_OPENSTACK_DIR        state directory (default /var/lib/basefs-openstack)
#   BASEFS_OPENSTACK_INSTANCES  nova-compute's instances_path (default $STATE/instances). Mount a
#                               basefs file system at $INSTANCES/_base *before* nova-compute starts
#                               (see BASEFS_OPENSTACK_COMPUTE=0 below).
#   BASEFS_OPENSTACK_NOVA_EXTRA_CONF  a file of extra nova options for nova-compute (e.g. an
#                               [image_cache] or [libvirt] section). It is copied to
#                               $STATE/nova/nova-compute-extra.conf and given to nova-compute as a
#                               second --config-file, so its options override nova.conf's.
#   BASEFS_OPENSTACK_IMAGE_CACHE_INTERVAL  [image_cache] manager_interval in seconds (default 20;
#                               nova's is 2400). remove_unused_base_images is true; nova's
#                               remove_unused_original_minimum_age_seconds stays 86400 unless
#                               BASEFS_OPENSTACK_IMAGE_CACHE_MIN_AGE says otherwise.
#   BASEFS_OPENSTACK_COMPUTE    1 (default): start nova-compute too, map it into cell1 and wait
#                               until its hypervisor is up. 0: start everything else and leave
#                               nova-compute alone (not started; a running one is not stopped) —
#                               for mounting basefs at $INSTANCES/_base with Keystone and Glance up,
#                               then running this script again with 1.
#   BASEFS_OPENSTACK_DEBUG      1: debug logging in every service (default 0)
#   BASEFS_OPENSTACK_{KEYSTONE,GLANCE,PLACEMENT,NOVA,NEUTRON,RABBIT,MYSQL,EPMD}_PORT   ports on
#                               127.0.0.1 (defaults 5000, 9292, 8778, 8774, 9696, 5672, 3306,
#                               24369; RabbitMQ's Erlang distribution port is RABBIT_PORT+20000)
#
# Output: stdout gets only `export OS_…=…` lines for the admin (project admin); progress and
# timings go to stderr. Also written: $STATE/openrc (admin), $STATE/openrc-basefs (the basefs
# service user), $STATE/clouds.yaml (clouds "basefs-openstack-admin" and "basefs-openstack-basefs";
# use OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml OS_CLOUD=…).
#
# This file holds the settings and the bookkeeping; scripts/lib/openstack-install.sh (packages,
# entry points), openstack-config.sh (every configuration) and openstack-services.sh (health
# checks, starts) are sourced into it in that order, then the credentials are written.
#
# Idempotent: every run rewrites the private configuration, then for each service: kept when it
# runs, was started with the same configuration (a hash in run/NAME.conf-hash) and is healthy;
# otherwise (re)started and waited for. One-time steps (database users and schemas, Keystone's
# keys and bootstrap, service users and catalog, cell mappings) run again only when their
# inputs change (stamps in $STATE/stamps). Everything already up: ~1 s.
#
# Services, all on 127.0.0.1, each started in its own session with stdin closed, its log in
# $STATE/log/NAME.log and its pid in $STATE/run/NAME.pid; nothing of Debian's init scripts,
# /etc/<service> configuration or systemd is used (the packages' postinst is kept from starting
# system-wide services by a policy-rc.d that answers 101 while installing):
#   epmd            Erlang port mapper for RabbitMQ only, on its own port (EPMD_PORT)
#   rabbitmq        rabbitmq-server 3.10, user "openstack", vhost "/"
#   mariadb         mariadbd 10.11, datadir $STATE/mariadb/data, socket $STATE/mariadb/mysqld.sock
#   keystone        keystone-wsgi-public under uWSGI (1 process × 4 threads: one in-memory cache),
#                   fernet tokens
#   glance          glance-api 25 (its eventlet server, one process), file store $STATE/glance/images,
#                   keystonemiddleware authtoken in the paste pipeline (flavor keystone)
#   placement       placement-api under uWSGI (1 process × 4 threads)
#   neutron         neutron-server 21 (eventlet; API in the main process, 1 RPC worker), see below
#   nova-api        nova-api-wsgi under uWSGI (2 processes × 1 thread: nova is eventlet-patched)
#   nova-conductor, nova-scheduler   1 worker each
#   nova-compute    libvirt driver, virt_type=qemu (TCG), qemu:///system, runs as root
# Debian's python3-nova and python3-neutron ship no nova-*/neutron-* commands (they come with
# nova-common, nova-compute, neutron-server, …, which pull in dbconfig, sudoers, rootwrap,
# open-iscsi, ovmf, every qemu-system-*, and init scripts): $STATE/bin/ holds the same
# console-script entry points (nova.cmd.compute:main, …) run by Debian's /usr/bin/python3.
#
# nova (nova.conf for api, conductor, scheduler, nova-manage; nova-compute.conf, the same without
# database credentials plus [libvirt] and [image_cache], then nova-compute-extra.conf):
#   [DEFAULT] compute_driver = libvirt.LibvirtDriver, instances_path = $INSTANCES, use_cow_images
#     and force_raw_images true (qcow2 overlays on raw bases in _base), my_ip 127.0.0.1
#   [libvirt] virt_type = qemu, connection_uri = qemu:///system, cpu_mode = none, images_type qcow2
#   [image_cache] manager_interval (above), remove_unused_base_images = true,
#     remove_unused_original_minimum_age_seconds (above), subdirectory_name = _base
#   [workarounds] disable_rootwrap = true: nova-compute runs as root; privileged helpers start as
#     `sudo privsep-helper …` (no nova-rootwrap, which is in nova-common)
#   [glance] no endpoint: Glance comes from the Keystone catalog (service type image, interfaces
#     internal,public, RegionOne); nova downloads images with the user's token and sends its own
#     service token ([service_user] send_service_user_token = true, user nova)
#   [keystone_authtoken] (every API service): user <service> in project service, password auth at
#     $KEYSTONE_URL, no memcached (each process caches tokens)
#   [placement], [neutron], [service_user]: password auth as nova / neutron in project service
#
# Accounts: Keystone admin (project admin, role admin); service users glance, nova, placement and
# basefs in project "service" with role admin — admin is what lets basefs list and download every
# Glance image of every visibility (Glance's context_is_admin). Passwords are generated once and
# kept in $STATE/secrets.env (mode 0600). Catalog: identity, image, placement, compute endpoints
# (public, internal, admin: the same loopback URL) in RegionOne.
#
# Networking: servers are created with `--nic none` (compute API microversion >= 2.37), so nothing
# is plugged, no port exists and nova waits for no vif event. Nova still needs a Neutron API:
# showing a server asks Neutron for its ports' security groups and deleting one asks for its
# ports (without a network endpoint in the catalog both fail: 500 on GET /servers/ID, and the
# delete puts the server in ERROR). So a real neutron-server runs (eventlet, ML2 with no
# mechanism drivers, no agents, no networks): the smallest Neutron that answers those queries.
#
# Measured on this machine (Debian 12, 2 cores, TCG, Debian mirror close by):
#   apt-get install --no-install-recommends, after scripts/setup-host.sh: 316 packages, 566 MiB
#     installed, ~75 s (python3-nova and its dependencies 49 s, glance-api 8 s, MariaDB, RabbitMQ,
#     Keystone, Placement, libvirt binding, CLI 11 s, python3-neutron 8 s)
#   first start, empty state directory: 46–58 s on an idle machine (68–96 s beside a test run),
#     of which: RabbitMQ 5 s, MariaDB init + start 1 s, Keystone db_sync + keys + bootstrap 7–8 s,
#     users and catalog 1.5 s, Glance db_sync + start 3 s, Placement 2 s, Neutron db upgrade +
#     start 6 s, Nova databases (api_db sync, cells, db sync) 10–12 s, nova-api 2 s, conductor
#     and scheduler 1.5 s each, nova-compute 2 s, host mapped and hypervisor up 2.5 s
#   everything already running: ~0.5 s; (re)starting one nova daemon over a running cloud: ~8 s
#     (it counts as up when it reports, every 10 s); stop-openstack.sh: ~25 s
#   disk: the state directory is ~170 MiB after a first start (MariaDB's data 166 MiB), plus
#     images in Glance and bases in _base; memory: ~2.1 GiB RSS for all services
set -euo pipefail

SELF=start-openstack.sh
log() { printf '%s %s: %s\n' "$(date +%T)" "$SELF" "$*" >&2; }
die() { printf '%s: %s\n' "$SELF" "$*" >&2; exit 1; }
# shellcheck source=lib/paste.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/paste.sh"
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BASEFS_OPENSTACK_DIR:-/var/lib/basefs-openstack}
case "$STATE" in /*) ;; *) STATE=$(pwd -P)/$STATE ;; esac
INSTANCES=${BASEFS_OPENSTACK_INSTANCES:-$STATE/instances}
case "$INSTANCES" in /*) ;; *) INSTANCES=$(pwd -P)/$INSTANCES ;; esac
EXTRA_CONF=${BASEFS_OPENSTACK_NOVA_EXTRA_CONF:-}
CACHE_INTERVAL=${BASEFS_OPENSTACK_IMAGE_CACHE_INTERVAL:-20}
CACHE_MIN_AGE=${BASEFS_OPENSTACK_IMAGE_CACHE_MIN_AGE:-86400}
WANT_COMPUTE=${BASEFS_OPENSTACK_COMPUTE:-1}
DEBUG=false
[ "${BASEFS_OPENSTACK_DEBUG:-0}" = 1 ] && DEBUG=true

port() { # NAME DEFAULT
	local v
	v=$(eval "echo \${BASEFS_OPENSTACK_${1}_PORT:-$2}")
	[[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] && [ "$v" -le 65535 ] ||
		die "BASEFS_OPENSTACK_${1}_PORT=$v is not a port number"
	echo "$v"
}
KEYSTONE_PORT=$(port KEYSTONE 5000)
GLANCE_PORT=$(port GLANCE 9292)
PLACEMENT_PORT=$(port PLACEMENT 8778)
NOVA_PORT=$(port NOVA 8774)
NEUTRON_PORT=$(port NEUTRON 9696)
RABBIT_PORT=$(port RABBIT 5672)
MYSQL_PORT=$(port MYSQL 3306)
EPMD_PORT=$(port EPMD 24369)
RABBIT_DIST_PORT=$((RABBIT_PORT + 20000))
[[ "$CACHE_INTERVAL" =~ ^-?[0-9]+$ ]] || die "BASEFS_OPENSTACK_IMAGE_CACHE_INTERVAL=$CACHE_INTERVAL is not a number of seconds"
[[ "$CACHE_MIN_AGE" =~ ^[0-9]+$ ]] || die "BASEFS_OPENSTACK_IMAGE_CACHE_MIN_AGE=$CACHE_MIN_AGE is not a number of seconds"
case "$WANT_COMPUTE" in 0 | 1) ;; *) die "BASEFS_OPENSTACK_COMPUTE must be 0 or 1" ;; esac
if [ -n "$EXTRA_CONF" ]; then
	[ -r "$EXTRA_CONF" ] || die "BASEFS_OPENSTACK_NOVA_EXTRA_CONF=$EXTRA_CONF is not a readable file"
fi

KEYSTONE_URL="http://127.0.0.1:$KEYSTONE_PORT"
GLANCE_URL="http://127.0.0.1:$GLANCE_PORT"
PLACEMENT_URL="http://127.0.0.1:$PLACEMENT_PORT"
NOVA_URL="http://127.0.0.1:$NOVA_PORT/v2.1"
NEUTRON_URL="http://127.0.0.1:$NEUTRON_PORT"
REGION=RegionOne
HOST=$(hostname)
PY=/usr/bin/python3 # Debian's python: the python3 first on PATH may be another build without Debian's modules

# Daemons get a plain environment: Debian's binaries first, no foreign Python settings.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYENV_VERSION OS_CLOUD OS_AUTH_URL OS_TOKEN 2>/dev/null || true
export LC_ALL=C.UTF-8 LANG=C.UTF-8

[ "$(id -u)" = 0 ] || die "must run as root (packages, libvirt at qemu:///system, nova-compute)"

T0=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
TIMES=()
mark() { # NAME START: record a step's duration
	local d
	d=$(elapsed "$2")
	TIMES+=("$1=${d}s")
	log "$1 took ${d} s"
}

mkdir -p "$STATE"
chmod 755 "$STATE" # qemu (libvirt-qemu) must traverse it to reach the instances
mkdir -p "$STATE/log" "$STATE/run" "$STATE/stamps" "$STATE/bin"
chmod 700 "$STATE/log" "$STATE/run" "$STATE/stamps" "$STATE/bin"
exec 9>"$STATE/.lock"
flock -w 900 9 || die "another start-openstack.sh holds $STATE/.lock"

# --- secrets ------------------------------------------------------------------------------------
SECRETS=$STATE/secrets.env
# Generated once each (alphanumeric: no quoting in URLs and configs); a name missing from an
# older file is added.
(umask 077 && touch "$SECRETS")
chmod 600 "$SECRETS"
for n in ADMIN GLANCE NOVA PLACEMENT NEUTRON BASEFS RABBIT DB_KEYSTONE DB_GLANCE DB_PLACEMENT DB_NOVA DB_NEUTRON; do
	grep -q "^${n}_PASSWORD=" "$SECRETS" ||
		echo "${n}_PASSWORD=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)" >>"$SECRETS"
done
# shellcheck disable=SC1090
. "$SECRETS"

# --- process bookkeeping ------------------------------------------------------------------------
pidfile() { echo "$STATE/run/$1.pid"; }
# ours NAME: the pid file names a live process started by this script for this state directory:
# its command line holds the service's marker (a path under $STATE), or its environment the
# variables every daemon gets here (for shell wrappers such as rabbitmq-server).
declare -A MARKER=()
ours() {
	local pid f
	f=$(pidfile "$1")
	[ -s "$f" ] || return 1
	pid=$(cat "$f" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && alive "$pid" || return 1
	if [ -n "${MARKER[$1]:-}" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${MARKER[$1]}"; then
		return 0
	fi
	tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "BASEFS_OPENSTACK_SERVICE=$1@$STATE"
}
stop_service() { # NAME: SIGTERM, wait up to 30 s, then SIGKILL (the process group: uWSGI, oslo workers)
	local name=$1 pid f
	f=$(pidfile "$name")
	if ! ours "$name"; then
		rm -f "$f" "$STATE/run/$name.conf-hash"
		return 0
	fi
	pid=$(cat "$f")
	log "stopping $name (pid $pid)"
	stop_pid "$pid" 30 TERM group || log "$name (pid $pid) did not stop, even on SIGKILL"
	rm -f "$f" "$STATE/run/$name.conf-hash"
}
# launch NAME CMD...: start CMD in its own session (so its pid is its process group), stdin
# closed, output appended to log/NAME.log, pid in run/NAME.pid (written by the inner shell before
# it execs, so it is exact). fd 9 (the lock) is not inherited.
launch() {
	local name=$1
	shift
	local lf="$STATE/log/$name.log"
	echo "=== $(date -Is) $SELF: starting $name: $*" >>"$lf"
	rm -f "$(pidfile "$name")"
	# The service keeps no descriptor of ours beyond 0-2: an inherited lock (a caller's
	# `flock FILE make run-openstack`) or pipe (a test harness waiting for EOF) would be held
	# for as long as the service runs.
	(cd "$STATE" && BASEFS_OPENSTACK_SERVICE="$name@$STATE" exec setsid bash -c 'echo $$ >"$1"; shift
		for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
		exec "$@"' _ "$(pidfile "$name")" "$@" </dev/null >>"$lf" 2>&1 9>&-) &
	wait_until 25 test -s "$(pidfile "$name")" || die "$name did not start (no pid file); see $lf"
}
fail_log() { # NAME MESSAGE
	echo "$SELF: $2; last lines of $STATE/log/$1.log:" >&2
	tail -n 40 "$STATE/log/$1.log" >&2 || true
	exit 1
}
# wait_healthy NAME TIMEOUT CHECK...: poll CHECK until it succeeds while NAME runs.
wait_healthy() {
	local name=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	while :; do
		"$@" && return 0
		ours "$name" || fail_log "$name" "$name exited while starting"
		[ "$SECONDS" -lt "$deadline" ] || fail_log "$name" "$name not healthy within $timeout s"
		sleep 0.25
	done
}
http_ok() { curl -sf -o /dev/null --max-time 3 "$1"; }
conf_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
# ensure NAME PORT HASH HEALTHCHECK TIMEOUT -- CMD...: keep NAME if it runs with the same config
# hash and is healthy; else (re)start it and wait until HEALTHCHECK passes. PORT "-" for none.
# HEALTHCHECK is one shell word naming a function (run with no arguments).
STARTED=()
ensure() {
	local name=$1 port=$2 hash=$3 check=$4 timeout=$5
	shift 6 # the "--" too
	local hf="$STATE/run/$name.conf-hash"
	if ours "$name"; then
		if [ "$(cat "$hf" 2>/dev/null)" = "$hash" ]; then
			if $check; then
				return 0
			fi
			# Same configuration but not (yet) healthy: maybe still starting (a start that
			# timed out). Give it its timeout once more before replacing it.
			local deadline=$((SECONDS + timeout))
			while [ "$SECONDS" -lt "$deadline" ] && ours "$name"; do
				$check && return 0
				sleep 0.5
			done
			log "$name runs but is not healthy: restarting it"
		else
			log "$name runs with another configuration: restarting it"
		fi
		stop_service "$name"
	fi
	if [ "$port" != - ] && ! port_free "$port"; then
		local var=${name^^}
		case "$name" in mariadb) var=MYSQL ;; rabbitmq) var=RABBIT ;; nova-api) var=NOVA ;; esac
		port_taken_die "$port" "$name" "BASEFS_OPENSTACK_${var}_PORT"
	fi
	local t=$EPOCHREALTIME
	${PRELAUNCH:-}
	launch "$name" "$@"
	wait_healthy "$name" "$timeout" $check
	echo "$hash" >"$hf"
	STARTED+=("$name")
	mark "start-$name" "$t"
}

write() { # FILE: write stdin to FILE atomically, mode 0600 (the configs hold passwords)
	(umask 077 && cat >"$1.new")
	mv -f "$1.new" "$1"
}

# The work, in order (each part sourced into this shell: they share its settings and functions).
for part in openstack-install openstack-config openstack-services; do
	# shellcheck source=/dev/null
	. "$REPO/scripts/lib/$part.sh"
done

# --- credentials ----------------------------------------------------------------------------------
# shellcheck disable=SC1091
. "$STATE/project-ids"
# OS_DOMAIN_NAME and OS_PROJECT_ID besides the usual names: gophercloud's AuthOptionsFromEnv
# (basefs) reads neither OS_USER_DOMAIN_NAME nor OS_PROJECT_DOMAIN_NAME, refuses a project name
# without OS_PROJECT_ID or OS_DOMAIN_*, and Keystone refuses a user name without its domain. The
# openstack CLI takes OS_DOMAIN_NAME given with a project as the user's and project's domain.
openrc() { # USER PASSWORD PROJECT PROJECT-ID
	cat <<EOF
# Written by basefs scripts/start-openstack.sh: $1 in project $3.
export OS_AUTH_URL=$KEYSTONE_URL/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=$1
export OS_PASSWORD=$2
export OS_PROJECT_NAME=$3
export OS_PROJECT_ID=$4
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_DOMAIN_NAME=Default
export OS_REGION_NAME=$REGION
export OS_INTERFACE=public
EOF
}
openrc admin "$ADMIN_PASSWORD" admin "$ADMIN_PROJECT_ID" | write "$STATE/openrc"
openrc basefs "$BASEFS_PASSWORD" service "$SERVICE_PROJECT_ID" | write "$STATE/openrc-basefs"
cloud() { # NAME USER PASSWORD PROJECT PROJECT-ID
	cat <<EOF
  $1:
    auth:
      auth_url: $KEYSTONE_URL/v3
      username: $2
      password: $3
      project_name: $4
      project_id: $5
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
}
{
	echo "# Written by basefs scripts/start-openstack.sh."
	echo "clouds:"
	cloud basefs-openstack-admin admin "$ADMIN_PASSWORD" admin "$ADMIN_PROJECT_ID"
	cloud basefs-openstack-basefs basefs "$BASEFS_PASSWORD" service "$SERVICE_PROJECT_ID"
} | write "$STATE/clouds.yaml"

if [ "${#STARTED[@]}" -gt 0 ]; then
	log "up in $(elapsed "$T0") s (started: ${STARTED[*]}; ${TIMES[*]})"
	echo "$(date -Is) started=${STARTED[*]} total=$(elapsed "$T0")s ${TIMES[*]}" >>"$STATE/log/start-times.log"
fi
grep '^export ' "$STATE/openrc"
