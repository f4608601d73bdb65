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
	[[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
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
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		sleep 0.3
	fi
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
	(cd "$STATE" && BASEFS_OPENSTACK_SERVICE="$name@$STATE" exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ \
		"$(pidfile "$name")" "$@" </dev/null >>"$lf" 2>&1 9>&-) &
	for _ in $(seq 1 50); do
		[ -s "$(pidfile "$name")" ] && return 0
		sleep 0.05
	done
	die "$name did not start (no pid file); see $lf"
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
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
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
		die "127.0.0.1:$port (for $name) is already in use by another process (set BASEFS_OPENSTACK_*_PORT)"
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

# --- install ------------------------------------------------------------------------------------
# Debian bookworm packages, --no-install-recommends. On a machine where scripts/setup-host.sh
# (libvirt, qemu) and scripts/start-glance.sh (glance-api) already ran, measured here:
#   mariadb-server-core mariadb-client-core rabbitmq-server python3-keystone python3-placement
#   python3-libvirt python3-openstackclient (+ deps: 51 packages): 11 s, 186 MB
#   python3-nova (+ deps): ~60 s (HOST-NOTES), glance-api: ~105 s (start-glance.sh)
PKGS=(
	mariadb-server-core mariadb-client-core python3-pymysql # the database (no init scripts, no galera)
	rabbitmq-server                                         # the message bus of nova
	python3-keystone uwsgi-plugin-python3                   # Keystone and the WSGI server
	glance-api python3-glance                               # Glance (its eventlet server glance-api)
	python3-placement                                       # Placement
	python3-nova python3-libvirt                            # Nova's code and the libvirt binding
	python3-neutron                                         # neutron-server (ML2, no agents, no networks)
	python3-openstackclient                                 # the openstack CLI
	curl sudo                                               # health checks; oslo.privsep runs "sudo privsep-helper"
)
missing_pkgs() {
	local p
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
	done
}
mapfile -t MISSING < <(missing_pkgs)
if [ "${#MISSING[@]}" -gt 0 ]; then
	t=$EPOCHREALTIME
	log "installing ${MISSING[*]} (apt log: $STATE/log/apt.log)"
	made_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# The packages' postinst would start system-wide services (rabbitmq-server, glance-api)
		# through invoke-rc.d; a policy-rc.d answering 101 forbids that while we install.
		printf '#!/bin/sh\n# temporary, from basefs scripts/start-openstack.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	apt_install() {
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=900 \
			--no-install-recommends "${MISSING[@]}" >>"$STATE/log/apt.log" 2>&1
	}
	rc=0
	apt_install || rc=$?
	if [ "$rc" != 0 ] && grep -qE 'Unable to locate package|has no installation candidate|404 +Not Found|Failed to fetch' "$STATE/log/apt.log"; then
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -q >>"$STATE/log/apt.log" 2>&1 || true
		rc=0
		apt_install || rc=$?
	fi
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	if [ "$rc" != 0 ]; then
		tail -n 30 "$STATE/log/apt.log" >&2
		die "apt-get install failed (full log: $STATE/log/apt.log)"
	fi
	mapfile -t MISSING < <(missing_pkgs)
	[ "${#MISSING[@]}" = 0 ] || die "still not installed: ${MISSING[*]}"
	mark apt-install "$t"
fi
NOVA_VERSION=$(dpkg-query -W -f='${Version}' python3-nova)
KEYSTONE_VERSION=$(dpkg-query -W -f='${Version}' python3-keystone)
GLANCE_VERSION=$(dpkg-query -W -f='${Version}' python3-glance)
PLACEMENT_VERSION=$(dpkg-query -W -f='${Version}' python3-placement)
NEUTRON_VERSION=$(dpkg-query -W -f='${Version}' python3-neutron)

# libvirtd and virtlogd (no systemd): the project's host setup starts them.
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
	log "libvirtd is not answering on qemu:///system: running scripts/setup-host.sh"
	"$REPO/scripts/setup-host.sh" >&2 9>&- # the daemons it starts must not hold our lock
fi

# --- entry points ---------------------------------------------------------------------------------
for cmd in compute:nova-compute conductor:nova-conductor scheduler:nova-scheduler manage:nova-manage; do
	mod=${cmd%%:*} name=${cmd#*:}
	write "$STATE/bin/$name" <<EOF
#!$PY
# $name (written by basefs scripts/start-openstack.sh): the console script of Debian's nova-*
# packages, which python3-nova does not ship.
import sys
from nova.cmd.$mod import main
sys.exit(main())
EOF
	chmod 700 "$STATE/bin/$name"
done
write "$STATE/bin/neutron-db-manage" <<EOF
#!$PY
# neutron-db-manage (written by basefs scripts/start-openstack.sh): the console script of
# Debian's neutron-common, which python3-neutron does not ship.
import sys
from neutron.db.migration.cli import main
sys.exit(main())
EOF
write "$STATE/bin/neutron-server" <<EOF
#!$PY
# neutron-server (written by basefs scripts/start-openstack.sh): the console script of Debian's
# neutron-server packages, which python3-neutron does not ship, plus one workaround.
import sys
# First neutron.cmd.eventlet: importing it monkey-patches (eventlet). Anything that imports
# SQLAlchemy, oslo.db or threading before it leaves unpatched locks behind, and the server
# then hangs on its first database request.
import neutron.cmd.eventlet  # noqa: F401
# Neutron 21's get_ports() names Port.port_forwardings and Port.distributed_port_binding,
# backrefs that exist only once their models are imported (port forwarding: nothing imports it
# without its service plugin) and SQLAlchemy has configured the mappers (the first query does):
# when listing ports is the first request — nova's first call — it fails with "AttributeError:
# type object 'Port' has no attribute 'port_forwardings'" (HTTP 500). So import every model (the
# set neutron-db-manage uses) and configure the mappers before serving.
import neutron.db.migration.models.head  # noqa: F401
from sqlalchemy import orm
orm.configure_mappers()
from neutron.cmd.eventlet.server import main
sys.exit(main())
EOF
chmod 700 "$STATE/bin/neutron-db-manage" "$STATE/bin/neutron-server"
write "$STATE/bin/nova-api-wsgi" <<EOF
# nova-api WSGI entry point (written by basefs scripts/start-openstack.sh), as nova-common's
# /usr/bin/nova-api-wsgi: uWSGI loads it with wsgi-file.
from nova.api.openstack.compute.wsgi import init_application
application = init_application()
EOF

# --- configuration --------------------------------------------------------------------------------
mkdir -p "$STATE/mariadb" "$STATE/rabbitmq/mnesia" "$STATE/rabbitmq/log" \
	"$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys" \
	"$STATE/glance/images" "$STATE/glance/staging" "$STATE/glance/tasks" "$STATE/glance/image-cache" \
	"$STATE/glance/locks" "$STATE/glance/conf.d" "$STATE/glance/policy.d" \
	"$STATE/placement/policy.d" "$STATE/nova/locks" "$STATE/nova/policy.d" "$STATE/nova/conf.d" \
	"$STATE/keystone/policy.d" "$STATE/neutron/locks" "$STATE/neutron/policy.d" "$STATE/neutron/conf.d"
chmod 700 "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys" "$STATE/mariadb"
mkdir -p "$INSTANCES"
chmod 755 "$INSTANCES" 2>/dev/null || true

db_url() { echo "mysql+pymysql://$1:$2@127.0.0.1:$MYSQL_PORT/$3?charset=utf8"; }
RABBIT_URL="rabbit://openstack:$RABBIT_PASSWORD@127.0.0.1:$RABBIT_PORT/"
# The oslo sections of a service (glance, neutron, nova) in its state directory SERVICE: its
# policy files and lock directory, no notifications (there is no listener).
oslo_sections() {
	cat <<EOF
[oslo_policy]
policy_file = $STATE/$1/policy.yaml
policy_dirs = $STATE/$1/policy.d
[oslo_concurrency]
lock_path = $STATE/$1/locks
[oslo_messaging_notifications]
driver = noop
EOF
}
# [keystone_authtoken] of a service: USER PASSWORD
authtoken() {
	cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $2
region_name = $REGION
# No memcached: tokens are cached in each process.
memcached_servers =
EOF
}
# A keystoneauth section (SECTION USER PASSWORD) for service-to-service calls.
ksauth() {
	cat <<EOF
[$1]
auth_type = password
auth_url = $KEYSTONE_URL
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $3
region_name = $REGION
EOF
}

# MariaDB
write "$STATE/mariadb/my.cnf" <<EOF
# Written by basefs scripts/start-openstack.sh.
[mariadbd]
datadir = $STATE/mariadb/data
socket = $STATE/mariadb/mysqld.sock
pid-file = $STATE/mariadb/mariadbd.pid
bind-address = 127.0.0.1
port = $MYSQL_PORT
user = root
skip-name-resolve
log-error = $STATE/log/mariadb.log
innodb_log_file_size = 16M
innodb_buffer_pool_size = 128M
innodb_flush_log_at_trx_commit = 2
max_connections = 1000
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
[client]
socket = $STATE/mariadb/mysqld.sock
user = root
EOF
chmod 644 "$STATE/mariadb/my.cnf"

# RabbitMQ: the environment of rabbitmq-server and rabbitmqctl
RMQ=$STATE/rabbitmq
: >"$RMQ/rabbitmq-env.conf" # keep /etc/rabbitmq/rabbitmq-env.conf out
echo '[].' | write "$RMQ/enabled_plugins"
write "$RMQ/rabbitmq.conf" <<EOF
# Written by basefs scripts/start-openstack.sh.
listeners.tcp.1 = 127.0.0.1:$RABBIT_PORT
default_user = openstack
default_pass = $RABBIT_PASSWORD
loopback_users = none
log.file.level = warning
log.console = false
EOF
rmq_env() {
	export HOME="$RMQ" RABBITMQ_CONF_ENV_FILE="$RMQ/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins" RABBITMQ_MNESIA_BASE="$RMQ/mnesia" \
		RABBITMQ_LOG_BASE="$RMQ/log" RABBITMQ_NODENAME=basefs@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$RABBIT_PORT" RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
		ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_PID_FILE="$RMQ/beam.pid" \
		RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# Keystone
write "$STATE/keystone/keystone.conf" <<EOF
# Written by basefs scripts/start-openstack.sh.
[DEFAULT]
debug = $DEBUG
use_stderr = true
[database]
connection = $(db_url keystone "$DB_KEYSTONE_PASSWORD" keystone)
[token]
provider = fernet
expiration = 14400
[identity]
# bcrypt cost 4 instead of 12: every password authentication (each service's first token, each
# CLI call) costs ~0.3 s less. A private loopback test cloud.
password_hash_rounds = 4
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
[cache]
# Keystone without a cache runs ~300 SQL queries per authenticated request (~0.25 s here); with
# dogpile's in-memory cache ~4 ms. That cache is per process, so Keystone runs in ONE uWSGI
# process (threads for concurrency): its invalidations then reach every reader.
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
policy_file = $STATE/keystone/policy.yaml
policy_dirs = $STATE/keystone/policy.d
EOF
uwsgi_ini() { # NAME PORT WSGIFILE PROCESSES THREADS ENV
	cat <<EOF
# Written by basefs scripts/start-openstack.sh.
[uwsgi]
plugins = python3
master = true
processes = $4
threads = $5
enable-threads = true
lazy-apps = true
need-app = true
die-on-term = true
no-orphans = true
thunder-lock = true
http-socket = 127.0.0.1:$2
buffer-size = 65535
listen = 100
chdir = $STATE/$1
wsgi-file = $3
env = $6
# uWSGI's http-socket does not keep connections alive; say so, or clients (python-requests) reuse
# a connection uWSGI has closed and get "Connection reset by peer".
add-header = Connection: close
worker-reload-mercy = 5
EOF
}
uwsgi_ini keystone "$KEYSTONE_PORT" /usr/bin/keystone-wsgi-public 1 4 "OS_KEYSTONE_CONFIG_DIR=$STATE/keystone" |
	write "$STATE/keystone/uwsgi.ini"

# Glance (Keystone auth)
write "$STATE/glance/glance-api.conf" <<EOF
# Written by basefs scripts/start-openstack.sh.
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GLANCE_PORT
# 0: serve in the one glance-api process (eventlet), so the pid file names the server.
workers = 0
enabled_backends = fs:file
image_cache_dir = $STATE/glance/image-cache
debug = $DEBUG
use_stderr = true
show_image_direct_url = false

[database]
connection = $(db_url glance "$DB_GLANCE_PASSWORD" glance)

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = $STATE/glance/images/

[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging/

[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks/

[paste_deploy]
flavor = keystone
config_file = $STATE/glance/glance-api-paste.ini

$(authtoken glance "$GLANCE_PASSWORD")

$(oslo_sections glance)
EOF
write "$STATE/glance/glance-api-paste.ini" <<EOF
# Written by basefs scripts/start-openstack.sh: Debian's glance-api-keystone pipeline without
# cors and osprofiler.
[pipeline:glance-api-keystone]
pipeline = healthcheck http_proxy_to_wsgi versionnegotiation authtoken context rootapp

$(glance_paste_apps "$STATE/glance/healthcheck_disable")

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
EOF

# Placement
write "$STATE/placement/placement.conf" <<EOF
# Written by basefs scripts/start-openstack.sh.
[DEFAULT]
debug = $DEBUG
use_stderr = true
[api]
auth_strategy = keystone
$(authtoken placement "$PLACEMENT_PASSWORD")
[placement_database]
connection = $(db_url placement "$DB_PLACEMENT_PASSWORD" placement)
[oslo_policy]
policy_file = $STATE/placement/policy.yaml
policy_dirs = $STATE/placement/policy.d
EOF
uwsgi_ini placement "$PLACEMENT_PORT" /usr/bin/placement-api 1 4 "OS_PLACEMENT_CONFIG_DIR=$STATE/placement" |
	write "$STATE/placement/uwsgi.ini"

# Neutron: neutron-server (its eventlet server: one API worker, one RPC worker), ML2 with no
# mechanism drivers and no agents. Nothing is plugged anywhere; it answers nova's port and
# security-group queries.
write "$STATE/neutron/neutron.conf" <<EOF
# Written by basefs scripts/start-openstack.sh.
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $NEUTRON_PORT
debug = $DEBUG
use_stderr = true
state_path = $STATE/neutron
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $RABBIT_URL
# 0: the API runs in neutron-server's main process (one RPC worker and a periodic worker remain)
api_workers = 0
rpc_workers = 1
rpc_state_report_workers = 0
api_paste_config = $STATE/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $(db_url neutron "$DB_NEUTRON_PASSWORD" neutron)
$(authtoken neutron "$NEUTRON_PASSWORD")
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers =
[ml2_type_flat]
flat_networks =
[securitygroup]
enable_security_group = true
firewall_driver = noop
$(oslo_sections neutron)
[agent]
root_helper = true
EOF
write "$STATE/neutron/api-paste.ini" <<EOF
# Written by basefs scripts/start-openstack.sh: neutron's api-paste.ini (keystone pipelines, no
# cors or osprofiler).
[composite:neutron]
use = egg:Paste#urlmap
/: neutronversions_composite
/healthcheck: healthcheck
/v2.0: neutronapi_v2_0

[composite:neutronapi_v2_0]
use = call:neutron.auth:pipeline_factory
keystone = http_proxy_to_wsgi request_id catch_errors authtoken keystonecontext extensions neutronapiapp_v2_0

[composite:neutronversions_composite]
use = call:neutron.auth:pipeline_factory
keystone = http_proxy_to_wsgi neutronversions

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:catch_errors]
paste.filter_factory = oslo_middleware:CatchErrors.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:keystonecontext]
paste.filter_factory = neutron.auth:NeutronKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:extensions]
paste.filter_factory = neutron.api.extensions:plugin_aware_extension_middleware_factory

[app:neutronversions]
paste.app_factory = neutron.pecan_wsgi.app:versions_factory

[app:neutronapiapp_v2_0]
paste.app_factory = neutron.api.v2.router:APIRouter.factory

$(paste_healthcheck app "$STATE/neutron/healthcheck_disable")
EOF

# Nova: one nova.conf for every nova service; nova-compute-extra.conf (the hook) for nova-compute.
NOVA_CONF=$STATE/nova/nova.conf
COMPUTE_CONF=$STATE/nova/nova-compute.conf
COMPUTE_EXTRA=$STATE/nova/nova-compute-extra.conf
nova_common() {
	cat <<EOF
[DEFAULT]
host = $HOST
my_ip = 127.0.0.1
debug = $DEBUG
use_stderr = true
state_path = $STATE/nova
instances_path = $INSTANCES
transport_url = $RABBIT_URL
compute_driver = libvirt.LibvirtDriver
enabled_apis = osapi_compute
# qcow2 overlays on raw bases in \$instances_path/_base: nova's defaults, said explicitly because
# basefs serves _base.
use_cow_images = true
force_raw_images = true
# No Neutron: servers are created with --nic none (nothing to plug, nothing to wait for).
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
# A private cloud: quotas would only get in the way of tests.
[quota]
driver = nova.quota.NoopQuotaDriver

[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $STATE/nova/api-paste.ini

$(authtoken nova "$NOVA_PASSWORD")

$(ksauth service_user nova "$NOVA_PASSWORD")
send_service_user_token = true

$(ksauth placement nova "$NOVA_PASSWORD")

[glance]
# Glance is found in the Keystone catalog (service type image); nova downloads with the user's
# token (plus its service token).
region_name = $REGION
valid_interfaces = internal,public

$(ksauth neutron neutron "$NEUTRON_PASSWORD")
# neutron-server has no agents and no networks: servers are created with --nic none; nova asks
# it only for a server's ports (none) and security groups.

[cinder]
os_region_name = $REGION

[conductor]
workers = 1
[scheduler]
workers = 1
[vnc]
enabled = false
[spice]
enabled = false
[serial_console]
enabled = false
$(oslo_sections nova)
EOF
}
{
	echo "# Written by basefs scripts/start-openstack.sh; rewritten on every start. The configuration of"
	echo "# nova-api, nova-conductor, nova-scheduler and nova-manage."
	nova_common
	cat <<EOF
[api_database]
connection = $(db_url nova "$DB_NOVA_PASSWORD" nova_api)
[database]
connection = $(db_url nova "$DB_NOVA_PASSWORD" nova)
EOF
} | write "$NOVA_CONF"
{
	echo "# Written by basefs scripts/start-openstack.sh; rewritten on every start. The configuration of"
	echo "# nova-compute: nova.conf without the database credentials (nova-compute goes through"
	echo "# nova-conductor; given them it tries the databases itself) plus the compute host's own"
	echo "# sections; nova-compute-extra.conf (BASEFS_OPENSTACK_NOVA_EXTRA_CONF) is read after it."
	nova_common
	cat <<EOF

[workarounds]
# nova-compute runs as root: privileged helpers (oslo.privsep) start as "sudo privsep-helper …"
# instead of through nova-rootwrap and /etc/nova/rootwrap.conf (nova-common, not installed).
disable_rootwrap = true

[libvirt]
virt_type = qemu
connection_uri = qemu:///system
cpu_mode = none
images_type = qcow2

[image_cache]
manager_interval = $CACHE_INTERVAL
remove_unused_base_images = true
remove_unused_original_minimum_age_seconds = $CACHE_MIN_AGE
subdirectory_name = _base
EOF
} | write "$COMPUTE_CONF"
if [ -n "$EXTRA_CONF" ]; then
	write "$COMPUTE_EXTRA" <"$EXTRA_CONF"
else
	echo "# No BASEFS_OPENSTACK_NOVA_EXTRA_CONF given (written by basefs scripts/start-openstack.sh)." |
		write "$COMPUTE_EXTRA"
fi
write "$STATE/nova/api-paste.ini" <<'EOF'
# Written by basefs scripts/start-openstack.sh: nova's api-paste.ini (keystone pipelines only,
# without cors and osprofiler).
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2: oscomputeversion_legacy_v2
/v2.1: oscomputeversion_v2
/v2/+: openstack_compute_api_v21_legacy_v2_compatible
/v2.1/+: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit authtoken keystonecontext osapi_compute_app_v21

[composite:openstack_compute_api_v21_legacy_v2_compatible]
use = call:nova.api.auth:pipeline_factory_v21
keystone = http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit authtoken keystonecontext legacy_v2_compatible osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory

[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory

[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:legacy_v2_compatible]
paste.filter_factory = nova.api.openstack:LegacyV2CompatibleWrapper.factory

[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory

[pipeline:oscomputeversions]
pipeline = faultwrap request_log http_proxy_to_wsgi oscomputeversionapp

[pipeline:oscomputeversion_v2]
pipeline = compute_req_id faultwrap request_log http_proxy_to_wsgi oscomputeversionapp_v2

[pipeline:oscomputeversion_legacy_v2]
pipeline = compute_req_id faultwrap request_log http_proxy_to_wsgi legacy_v2_compatible oscomputeversionapp_v2

[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory

[app:oscomputeversionapp_v2]
paste.app_factory = nova.api.openstack.compute.versions:VersionsV2.factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
EOF
uwsgi_ini nova "$NOVA_PORT" "$STATE/bin/nova-api-wsgi" 2 1 "OS_NOVA_CONFIG_DIR=$STATE/nova" |
	write "$STATE/nova/uwsgi-api.ini"
# nova-api reads api-paste.ini and nova.conf from OS_NOVA_CONFIG_DIR (its defaults)

NOVA_MANAGE=("$PY" "$STATE/bin/nova-manage" --config-file "$NOVA_CONF" --config-dir "$STATE/nova/conf.d")

# --- health checks --------------------------------------------------------------------------------
MYSQL=(mariadb --defaults-file="$STATE/mariadb/my.cnf")
h_epmd() { epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; }
h_rabbitmq() { ! port_free "$RABBIT_PORT"; }
h_mariadb() { "${MYSQL[@]}" -e 'select 1' >/dev/null 2>&1; }
h_keystone() { http_ok "$KEYSTONE_URL/v3"; }
h_glance() { http_ok "$GLANCE_URL/healthcheck"; }
h_placement() { http_ok "$PLACEMENT_URL/"; }
h_neutron() { http_ok "$NEUTRON_URL/healthcheck"; }
h_nova_api() { http_ok "http://127.0.0.1:$NOVA_PORT/"; }
# A nova service is healthy when it has registered or reported in its cell database since it was
# started (the services table of cell1: nova-conductor, nova-scheduler, nova-compute).
svc_since() { # BINARY: updated or created at or after run/BINARY.started (UTC)
	local since
	since=$(cat "$STATE/run/$1.started" 2>/dev/null) || return 1
	[ "$("${MYSQL[@]}" -N -B -e "select count(*) from nova.services where host='$HOST' and \`binary\`='$1'
		and deleted=0 and greatest(created_at, coalesce(updated_at, created_at)) >= '$since'" 2>/dev/null)" -ge 1 ] 2>/dev/null
}
# The check of a nova daemon: while ensure() decides whether to keep a running one (no start
# recorded by this run yet), running with the same configuration is enough; after a (re)start,
# svc_since.
h_nova_svc_or_running() {
	[ "$(cat "$STATE/run/$CHECK_STARTED.started-by" 2>/dev/null)" = "$$" ] || return 0
	svc_since "$CHECK_STARTED"
}

# --- start: the infrastructure ----------------------------------------------------------------------
# epmd: RabbitMQ's CLI tools reach the node through it. Its own port keeps it apart from any
# other Erlang on the machine.
MARKER[epmd]="-port $EPMD_PORT"
ensure epmd "$EPMD_PORT" "$EPMD_PORT" h_epmd 10 -- epmd -address 127.0.0.1 -port "$EPMD_PORT"

rmq_env
MARKER[rabbitmq]=""
h_rabbitmq_ready() { ! port_free "$RABBIT_PORT"; }
ensure rabbitmq "$RABBIT_PORT" "$(conf_hash "$RMQ/rabbitmq.conf")" h_rabbitmq_ready 90 -- \
	/usr/lib/rabbitmq/bin/rabbitmq-server

# MariaDB: a fresh data directory the first time.
if [ ! -d "$STATE/mariadb/data/mysql" ]; then
	t=$EPOCHREALTIME
	rm -rf "$STATE/mariadb/data"
	mariadb-install-db --defaults-file="$STATE/mariadb/my.cnf" --auth-root-authentication-method=socket \
		--skip-test-db >>"$STATE/log/mariadb-install-db.log" 2>&1 ||
		fail_log mariadb-install-db "mariadb-install-db failed"
	mark mariadb-install-db "$t"
fi
MARKER[mariadb]="--defaults-file=$STATE/mariadb/my.cnf"
ensure mariadb "$MYSQL_PORT" "$(conf_hash "$STATE/mariadb/my.cnf")" h_mariadb 60 -- \
	mariadbd --defaults-file="$STATE/mariadb/my.cnf"

# Databases and their users (idempotent SQL; the stamp only saves the round trip).
DBSQL=$(
	for x in keystone:keystone:"$DB_KEYSTONE_PASSWORD" glance:glance:"$DB_GLANCE_PASSWORD" \
		placement:placement:"$DB_PLACEMENT_PASSWORD" nova_api:nova:"$DB_NOVA_PASSWORD" \
		nova:nova:"$DB_NOVA_PASSWORD" nova_cell0:nova:"$DB_NOVA_PASSWORD" neutron:neutron:"$DB_NEUTRON_PASSWORD"; do
		IFS=: read -r db user pw <<<"$x"
		echo "CREATE DATABASE IF NOT EXISTS \`$db\`;"
		echo "CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pw';"
		echo "ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pw';"
		echo "GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'127.0.0.1';"
	done
)
stamp_ok() { [ "$(cat "$STATE/stamps/$1" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$STATE/stamps/$1"; }
k=$(echo "$DBSQL" | sha256sum | cut -c1-16)
if ! stamp_ok databases "$k"; then
	"${MYSQL[@]}" <<<"$DBSQL" || die "creating the databases failed"
	stamp databases "$k"
fi

# --- Keystone ------------------------------------------------------------------------------------
run_logged() { # NAME CMD...: run, output to log/NAME.log; on failure show it and exit
	local name=$1
	shift
	echo "=== $(date -Is) $*" >>"$STATE/log/$name.log"
	"$@" </dev/null >>"$STATE/log/$name.log" 2>&1 9>&- || fail_log "$name" "$* failed"
}
KM=("$PY" /usr/bin/keystone-manage --config-file "$STATE/keystone/keystone.conf")
k="$KEYSTONE_VERSION $(grep "^connection" "$STATE/keystone/keystone.conf" | sha256sum | cut -c1-16)"
if ! stamp_ok keystone-db "$k"; then
	t=$EPOCHREALTIME
	run_logged keystone-manage "${KM[@]}" db_sync
	[ -e "$STATE/keystone/fernet-keys/0" ] ||
		run_logged keystone-manage "${KM[@]}" fernet_setup --keystone-user root --keystone-group root
	[ -e "$STATE/keystone/credential-keys/0" ] ||
		run_logged keystone-manage "${KM[@]}" credential_setup --keystone-user root --keystone-group root
	OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD run_logged keystone-manage "${KM[@]}" bootstrap \
		--bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
		--bootstrap-service-name keystone --bootstrap-region-id "$REGION" \
		--bootstrap-admin-url "$KEYSTONE_URL/v3/" --bootstrap-internal-url "$KEYSTONE_URL/v3/" \
		--bootstrap-public-url "$KEYSTONE_URL/v3/"
	stamp keystone-db "$k"
	mark keystone-db-bootstrap "$t"
fi
MARKER[keystone]="$STATE/keystone/uwsgi.ini"
ensure keystone "$KEYSTONE_PORT" "$(conf_hash "$STATE/keystone/keystone.conf" "$STATE/keystone/uwsgi.ini")" \
	h_keystone 90 -- uwsgi --ini "$STATE/keystone/uwsgi.ini"

# Service project, users, roles, services, endpoints: get-or-create, so it can run again.
k=$(printf '%s\n' "$KEYSTONE_URL $GLANCE_URL $PLACEMENT_URL $NOVA_URL $NEUTRON_URL" "$(sha256sum "$SECRETS")" | sha256sum | cut -c1-16)
if ! stamp_ok keystone-catalog "$k" || [ ! -s "$STATE/project-ids" ]; then
	t=$EPOCHREALTIME
	echo "=== $(date -Is) catalog" >>"$STATE/log/keystone-catalog.log"
	ADMIN_PASSWORD=$ADMIN_PASSWORD KEYSTONE_URL=$KEYSTONE_URL REGION=$REGION \
		USERS="glance:$GLANCE_PASSWORD nova:$NOVA_PASSWORD placement:$PLACEMENT_PASSWORD neutron:$NEUTRON_PASSWORD basefs:$BASEFS_PASSWORD" \
		SERVICES="glance:image:$GLANCE_URL placement:placement:$PLACEMENT_URL nova:compute:$NOVA_URL neutron:network:$NEUTRON_URL" \
		PROJECT_IDS="$STATE/project-ids" \
		"$PY" - >>"$STATE/log/keystone-catalog.log" 2>&1 <<'EOF' || fail_log keystone-catalog "creating users and the catalog failed"
import os
from keystoneauth1.identity import v3
from keystoneauth1 import session
from keystoneclient.v3 import client

env = os.environ
auth = v3.Password(auth_url=env["KEYSTONE_URL"] + "/v3", username="admin", password=env["ADMIN_PASSWORD"],
                   project_name="admin", user_domain_id="default", project_domain_id="default")
ks = client.Client(session=session.Session(auth=auth), interface="public")
region = env["REGION"]

def one(items, what):
    if len(items) > 1:
        raise SystemExit("more than one %s" % what)
    return items[0] if items else None

domain = ks.domains.get("default")
project = one(ks.projects.list(name="service", domain=domain), "service project") or \
    ks.projects.create("service", domain, description="Service project (basefs)")
admin_role = one(ks.roles.list(name="admin"), "admin role")
for spec in env["USERS"].split():
    name, password = spec.split(":", 1)
    user = one(ks.users.list(name=name, domain=domain), "user " + name)
    if user is None:
        user = ks.users.create(name, domain=domain, password=password, default_project=project)
        print("created user", name)
    else:
        ks.users.update(user, password=password, default_project=project, enabled=True)
    ks.roles.grant(admin_role, user=user, project=project)
for spec in env["SERVICES"].split():
    name, stype, url = spec.split(":", 2)
    svc = one([s for s in ks.services.list(type=stype) if s.name == name], "service " + name)
    if svc is None:
        svc = ks.services.create(name, stype, description="%s (basefs)" % name)
        print("created service", name, stype)
    have = {e.interface: e for e in ks.endpoints.list(service=svc, region=region)}
    for iface in ("public", "internal", "admin"):
        e = have.get(iface)
        if e is None:
            ks.endpoints.create(svc, url, interface=iface, region=region)
            print("created endpoint", name, iface, url)
        elif e.url != url:
            ks.endpoints.update(e, url=url)
            print("updated endpoint", name, iface, url)
admin_project = one(ks.projects.list(name="admin", domain=domain), "admin project")
with open(env["PROJECT_IDS"] + ".new", "w") as f:
    f.write("ADMIN_PROJECT_ID=%s\nSERVICE_PROJECT_ID=%s\n" % (admin_project.id, project.id))
os.rename(env["PROJECT_IDS"] + ".new", env["PROJECT_IDS"])
print("catalog ok")
EOF
	stamp keystone-catalog "$k"
	mark keystone-users-catalog "$t"
fi

# --- Glance, Placement ----------------------------------------------------------------------------
k="$GLANCE_VERSION $(grep "^connection" "$STATE/glance/glance-api.conf" | sha256sum | cut -c1-16)"
if ! stamp_ok glance-db "$k"; then
	t=$EPOCHREALTIME
	run_logged glance-manage "$PY" /usr/bin/glance-manage --config-file "$STATE/glance/glance-api.conf" \
		--config-dir "$STATE/glance/conf.d" db_sync
	stamp glance-db "$k"
	mark glance-db-sync "$t"
fi
MARKER[glance]="$STATE/glance/glance-api.conf"
ensure glance "$GLANCE_PORT" "$(conf_hash "$STATE/glance/glance-api.conf" "$STATE/glance/glance-api-paste.ini")" \
	h_glance 90 -- "$PY" /usr/bin/glance-api --config-file "$STATE/glance/glance-api.conf" \
	--config-dir "$STATE/glance/conf.d"

k="$PLACEMENT_VERSION $(grep "^connection" "$STATE/placement/placement.conf" | sha256sum | cut -c1-16)"
if ! stamp_ok placement-db "$k"; then
	t=$EPOCHREALTIME
	run_logged placement-manage "$PY" /usr/bin/placement-manage --config-file "$STATE/placement/placement.conf" db sync
	stamp placement-db "$k"
	mark placement-db-sync "$t"
fi
MARKER[placement]="$STATE/placement/uwsgi.ini"
ensure placement "$PLACEMENT_PORT" "$(conf_hash "$STATE/placement/placement.conf" "$STATE/placement/uwsgi.ini")" \
	h_placement 90 -- uwsgi --ini "$STATE/placement/uwsgi.ini"

# --- Neutron -------------------------------------------------------------------------------------
NEUTRON_CONFS=(--config-file "$STATE/neutron/neutron.conf" --config-dir "$STATE/neutron/conf.d")
k="$NEUTRON_VERSION $(grep "^connection" "$STATE/neutron/neutron.conf" | sha256sum | cut -c1-16)"
if ! stamp_ok neutron-db "$k"; then
	t=$EPOCHREALTIME
	run_logged neutron-db-manage "$PY" "$STATE/bin/neutron-db-manage" "${NEUTRON_CONFS[@]}" upgrade heads
	stamp neutron-db "$k"
	mark neutron-db-upgrade "$t"
fi
MARKER[neutron]="$STATE/bin/neutron-server"
ensure neutron "$NEUTRON_PORT" "$(conf_hash "$STATE/neutron/neutron.conf" "$STATE/neutron/api-paste.ini" "$STATE/bin/neutron-server")" \
	h_neutron 120 -- "$PY" "$STATE/bin/neutron-server" "${NEUTRON_CONFS[@]}"

# --- Nova ----------------------------------------------------------------------------------------
k="$NOVA_VERSION $(grep -E "^(connection|transport_url)" "$NOVA_CONF" | sha256sum | cut -c1-16)"
if ! stamp_ok nova-db "$k"; then
	t=$EPOCHREALTIME
	run_logged nova-manage "${NOVA_MANAGE[@]}" api_db sync
	run_logged nova-manage "${NOVA_MANAGE[@]}" cell_v2 map_cell0 \
		--database_connection "$(db_url nova "$DB_NOVA_PASSWORD" nova_cell0)"
	if ! "${NOVA_MANAGE[@]}" cell_v2 list_cells 2>>"$STATE/log/nova-manage.log" 9>&- | grep -q ' cell1 '; then
		run_logged nova-manage "${NOVA_MANAGE[@]}" cell_v2 create_cell --name cell1
	else
		# Same name, maybe new credentials or URL: bring the mapping up to date.
		uuid=$("${NOVA_MANAGE[@]}" cell_v2 list_cells 2>/dev/null 9>&- | awk -F'|' '$2 ~ / cell1 / {gsub(/ /, "", $3); print $3}')
		run_logged nova-manage "${NOVA_MANAGE[@]}" cell_v2 update_cell --cell_uuid "$uuid" \
			--transport-url "$RABBIT_URL" --database_connection "$(db_url nova "$DB_NOVA_PASSWORD" nova)"
	fi
	run_logged nova-manage "${NOVA_MANAGE[@]}" db sync
	stamp nova-db "$k"
	mark nova-db-init "$t"
fi

MARKER[nova-api]="$STATE/nova/uwsgi-api.ini"
ensure nova-api "$NOVA_PORT" "$(conf_hash "$NOVA_CONF" "$STATE/nova/api-paste.ini" "$STATE/nova/uwsgi-api.ini" "$STATE/bin/nova-api-wsgi")" \
	h_nova_api 120 -- uwsgi --ini "$STATE/nova/uwsgi-api.ini"

nova_daemon() { # NAME CONFIG-FILE...
	local name=$1 hash args=()
	shift
	for f in "$@"; do args+=(--config-file "$f"); done
	hash=$(conf_hash "$@" "$STATE/bin/$name")
	MARKER[$name]="$STATE/bin/$name"
	# Just before a (re)start (after the old process is gone) record the time (UTC, the database's
	# clock): the health check is "registered or reported since".
	CHECK_STARTED=$name PRELAUNCH="prelaunch $name" \
		ensure "$name" - "$hash" h_nova_svc_or_running 120 -- "$PY" "$STATE/bin/$name" "${args[@]}" \
		--config-dir "$STATE/nova/conf.d"
}
prelaunch() { # NAME: before a nova daemon (re)starts
	[ "$1" != nova-compute ] || remove_orphan_domains
	record_started "$1"
}
# Libvirt domains nova made for this instances path whose servers this cloud does not know (its
# state directory was removed while they ran, say): nova ignores them, and a fresh database
# hands out their names (instance-00000001, …) again. Destroy and undefine them.
remove_orphan_domains() {
	local known d xml uuid
	known=$("${MYSQL[@]}" -N -B -e "select uuid from nova.instances where deleted=0" 2>/dev/null) || return 0
	for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep '^instance-' || true); do
		xml=$(virsh -c qemu:///system dumpxml "$d" 2>/dev/null) || continue
		grep -qF "$INSTANCES/" <<<"$xml" || continue
		uuid=$(sed -n 's:^ *<uuid>\(.*\)</uuid>.*:\1:p' <<<"$xml" | head -n1)
		[ -n "$uuid" ] && ! grep -qxF "$uuid" <<<"$known" || continue
		log "removing libvirt domain $d ($uuid): its files are under $INSTANCES but this cloud has no such server"
		virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
		virsh -c qemu:///system undefine "$d" >/dev/null 2>&1 || true
	done
}
record_started() {
	"${MYSQL[@]}" -N -B -e 'select utc_timestamp()' >"$STATE/run/$1.started"
	echo "$$" >"$STATE/run/$1.started-by"
}
nova_daemon nova-conductor "$NOVA_CONF"
nova_daemon nova-scheduler "$NOVA_CONF"

if [ "$WANT_COMPUTE" = 1 ]; then
	[ -e /dev/kvm ] && getent group kvm >/dev/null && { chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; } 2>/dev/null || true
	nova_daemon nova-compute "$COMPUTE_CONF" "$COMPUTE_EXTRA"
	# Map the compute host into cell1 and wait until its hypervisor is up (compute node record,
	# host mapping, resource provider in Placement).
	t=$EPOCHREALTIME
	deadline=$((SECONDS + 120))
	q() { "${MYSQL[@]}" -N -B -e "$1" 2>/dev/null; }
	while :; do
		if [ "$(q "select count(*) from nova.compute_nodes where host='$HOST' and deleted=0")" -ge 1 ] 2>/dev/null; then
			if [ "$(q "select count(*) from nova_api.host_mappings where host='$HOST'")" -ge 1 ] 2>/dev/null; then
				[ "$(q "select count(*) from placement.resource_providers rp join nova.compute_nodes cn
					on rp.uuid = cn.uuid where cn.host='$HOST' and cn.deleted=0")" -ge 1 ] 2>/dev/null && break
			else
				run_logged nova-manage "${NOVA_MANAGE[@]}" cell_v2 discover_hosts
			fi
		fi
		ours nova-compute || fail_log nova-compute "nova-compute exited"
		[ "$SECONDS" -lt "$deadline" ] || fail_log nova-compute "the hypervisor of $HOST did not come up within 120 s"
		sleep 0.5
	done
	mark hypervisor-up "$t"
fi

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
