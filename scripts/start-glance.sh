#!/usr/bin/env bash
# start-glance.sh — run Debian's OpenStack Glance (image API v2) on 127.0.0.1, with no Keystone,
# no RabbitMQ and no MySQL, as the real image service behind the glance:// origin tests.
#
#   scripts/start-glance.sh          install glance-api if missing, configure, start, wait
#   scripts/stop-glance.sh           stop it again (same environment variables)
#
# Environment:
#   BASEFS_GLANCE_DIR   state directory (default /var/lib/basefs-glance)
#   BASEFS_GLANCE_PORT  TCP port on 127.0.0.1 (default 9292)
#
# On success prints one line, the endpoint (e.g. http://127.0.0.1:9292), and exits 0; errors go
# to stderr. Idempotent: when the glance-api of this state directory already runs and answers
# /healthcheck on PORT it does nothing else (~20 ms). Otherwise it (re)writes the private
# configuration, runs `glance-manage db_sync` once per installed Glance version, starts
# `glance-api` in the background (its own session, stdin closed) and waits up to 60 s for
# http://127.0.0.1:PORT/healthcheck; on timeout it prints the log tail and exits 1. One state
# directory is one server: if its glance-api runs but does not answer on PORT (e.g. it was
# started with another port) it is stopped and started again.
#
# Everything lives in the state directory; nothing global is configured or started (Glance
# still reads the package's /etc/glance/schema-image.json, the schema of well-known properties):
#   glance-api.conf, glance-api-paste.ini, policy.yaml   configuration (rewritten on each start)
#   conf.d/, policy.d/      empty on purpose: keep /etc/glance/* drop-ins out (a *.conf put in
#                           conf.d/ is read after glance-api.conf: a hook for extra options)
#   glance.sqlite           the database ([database] connection = sqlite:///…)
#   images/<IMAGE_ID>       the image data, one plain file per image (filesystem store "fs")
#   staging/, tasks/        Glance's reserved staging and task stores (interoperable import)
#   glance-api.log          the server's log (appended); glance-manage.log, apt.log
#   glance-api.pid          pid of the glance-api process
#
# Authorization: the paste pipeline has no authtoken; `unauthenticated-context` gives every request
# an admin context without user or project, and policy.yaml sets every Glance policy rule to ""
# (always allowed), so plain curl with no X-Auth-Token / X-Roles header may create, upload,
# download (also ranged), PATCH (custom properties), publicize, deactivate and delete images.
# This is a private loopback test server: never bind it elsewhere. In particular it has no
# property protections: anyone who reaches it may set basefs_manifest, the value basefs hosts
# trust for an image's manifest, so it is no trust root (scripts/start-openstack.sh's Glance,
# with Keystone, lets only the basefs role write it).
set -euo pipefail

die() { echo "start-glance.sh: $*" >&2; exit 1; }
# shellcheck source=lib/paste.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/paste.sh"
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

STATE=${BASEFS_GLANCE_DIR:-/var/lib/basefs-glance}
PORT=${BASEFS_GLANCE_PORT:-9292}
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] ||
	die "BASEFS_GLANCE_PORT=$PORT is not a port number"
case "$STATE" in /*) ;; *) STATE=$(pwd -P)/$STATE ;; esac
URL="http://127.0.0.1:$PORT"
CONF="$STATE/glance-api.conf"
PIDFILE="$STATE/glance-api.pid"
LOG="$STATE/glance-api.log"

ours() { # pid file names a live glance-api
	local pid
	[ -s "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'glance-api'
}
healthy() { curl -sf -o /dev/null --max-time 3 "$URL/healthcheck"; }

# Fast path: already running and healthy.
if ours && healthy; then
	echo "$URL"
	exit 0
fi

mkdir -p "$STATE"
chmod 700 "$STATE"
# Serialize concurrent starts on the same state directory. fd 9 is closed for glance-api below.
exec 9>"$STATE/.lock"
flock -w 300 9 || die "another start-glance.sh holds $STATE/.lock"
if ours && healthy; then
	echo "$URL"
	exit 0
fi

stop_ours() {
	local pid
	pid=$(cat "$PIDFILE")
	stop_pid "$pid" || die "glance-api (pid $pid) did not stop"
	rm -f "$PIDFILE"
}
if ours; then
	# Running but not answering on $PORT. Started with this port: maybe still starting (after a
	# start that timed out), give it up to 60 s. Started with another port: replace it now.
	if [ "$(sed -n 's/^bind_port = //p' "$CONF" 2>/dev/null)" = "$PORT" ]; then
		for _ in $(seq 1 120); do
			healthy && { echo "$URL"; exit 0; }
			ours || break
			sleep 0.5
		done
	fi
	ours && stop_ours
fi
rm -f "$PIDFILE"

# Something else on the port?
port_free "$PORT" || port_taken_die "$PORT" glance-api BASEFS_GLANCE_PORT

# --- install ------------------------------------------------------------------------------------
installed() {
	dpkg-query -W -f='${Status}' glance-api 2>/dev/null | grep -q 'install ok installed' &&
		command -v glance-api >/dev/null && command -v glance-manage >/dev/null &&
		command -v curl >/dev/null
}
apt_install() { # args: extra apt-get options; returns apt-get's status, output in apt.log
	local pkgs=(glance-api)
	command -v curl >/dev/null || pkgs+=(curl) # the health check below
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
		"$@" "${pkgs[@]}" >>"$STATE/apt.log" 2>&1
}
install_glance() { # $1: "--no-install-recommends" or ""
	[ "$(id -u)" = 0 ] || die "glance-api is not installed and only root can install it"
	# The package's postinst would start a system-wide glance-api (init script, /etc/glance,
	# port 9292) if nothing forbade it; keep it from starting with a temporary policy-rc.d
	# (Debian's container images already ship one that answers 101).
	local made_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# temporary, from basefs scripts/start-glance.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	# shellcheck disable=SC2086 # $1 is empty or one option
	apt_install $1 || rc=$?
	if [ "$rc" != 0 ] && grep -qE 'Unable to locate package|has no installation candidate|404 +Not Found|Failed to fetch' "$STATE/apt.log"; then
		# No package lists (or stale ones): refresh them once and try again.
		DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STATE/apt.log" 2>&1 || true
		rc=0
		# shellcheck disable=SC2086
		apt_install $1 || rc=$?
	fi
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	if [ "$rc" != 0 ]; then
		tail -n 30 "$STATE/apt.log" >&2
		die "apt-get install $1 glance-api failed (full log: $STATE/apt.log)"
	fi
}
if ! installed; then
	# --no-install-recommends (200 packages instead of 337, ~105 s here) was measured to be enough
	# for glance-manage db_sync and glance-api: what it leaves out are recommends such as numpy,
	# scipy, matplotlib (of python3-networkx), python3-sqlalchemy-ext, qemu-block-extra, none of
	# which Glance needs. So there is no fallback to the full install; should a later Glance need
	# one, run `apt-get install -y glance-api` (with recommends) once by hand.
	install_glance --no-install-recommends
	installed || die "glance-api still not installed; see $STATE/apt.log"
fi
GLANCE_API=$(command -v glance-api)
GLANCE_MANAGE=$(command -v glance-manage)
VERSION=$(dpkg-query -W -f='${Version}' python3-glance 2>/dev/null || echo unknown)

# --- configuration ------------------------------------------------------------------------------
mkdir -p "$STATE/images" "$STATE/staging" "$STATE/tasks" "$STATE/image-cache" "$STATE/locks" \
	"$STATE/conf.d" "$STATE/policy.d"

write() { # write FILE atomically from stdin
	cat >"$1.new"
	mv -f "$1.new" "$1"
}

write "$CONF" <<EOF
# Written by basefs scripts/start-glance.sh; rewritten on every start. Private loopback Glance:
# no Keystone (no authtoken in the paste pipeline), no RabbitMQ (notifications off), sqlite.
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $PORT
# 0: serve in the one glance-api process (no forked workers), so the pid file names the server.
workers = 0
enabled_backends = fs:file
image_cache_dir = $STATE/image-cache
debug = false
use_stderr = false

[database]
connection = sqlite:///$STATE/glance.sqlite

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = $STATE/images/

[os_glance_staging_store]
filesystem_store_datadir = $STATE/staging/

[os_glance_tasks_store]
filesystem_store_datadir = $STATE/tasks/

[paste_deploy]
# Empty flavor: the pipeline is [pipeline:glance-api] of the private paste file.
flavor =
config_file = $STATE/glance-api-paste.ini

[oslo_policy]
policy_file = $STATE/policy.yaml
policy_dirs = $STATE/policy.d
enforce_new_defaults = false
enforce_scope = false

[oslo_messaging_notifications]
driver = noop

[oslo_concurrency]
lock_path = $STATE/locks
EOF

write "$STATE/glance-api-paste.ini" <<EOF
# Written by basefs scripts/start-glance.sh. No authtoken: every request gets an unauthenticated
# (admin, no project) context.
[pipeline:glance-api]
pipeline = healthcheck versionnegotiation unauthenticated-context rootapp

$(glance_paste_apps "$STATE/healthcheck_disable")

[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory
EOF

# Every rule Glance 25 registers, set to "" (always allowed). Left out, as their defaults are
# already "" (listing them only adds log warnings): default, metadef_default, and the deprecated
# modify_task. YAML is this Glance's (25.x, Zed) policy format.
{
	echo '# Written by basefs scripts/start-glance.sh: everything allowed (private loopback server).'
	echo '"context_is_admin": ""'
	for r in \
		add_image delete_image get_image get_images modify_image publicize_image communitize_image \
		download_image upload_image copy_image deactivate reactivate \
		get_image_location set_image_location delete_image_location \
		add_member delete_member get_member get_members modify_member \
		get_task get_tasks add_task tasks_api_access \
		stores_info_detail manage_image_cache cache_image cache_list cache_delete \
		metadef_admin \
		get_metadef_namespace get_metadef_namespaces modify_metadef_namespace \
		add_metadef_namespace delete_metadef_namespace \
		get_metadef_object get_metadef_objects modify_metadef_object add_metadef_object \
		delete_metadef_object \
		list_metadef_resource_types get_metadef_resource_type \
		add_metadef_resource_type_association remove_metadef_resource_type_association \
		get_metadef_property get_metadef_properties modify_metadef_property \
		add_metadef_property remove_metadef_property \
		get_metadef_tag get_metadef_tags modify_metadef_tag add_metadef_tag add_metadef_tags \
		delete_metadef_tag delete_metadef_tags; do
		echo "\"$r\": \"\""
	done
} | write "$STATE/policy.yaml"

# --- database -----------------------------------------------------------------------------------
if [ "$(cat "$STATE/db_synced" 2>/dev/null || true)" != "$VERSION" ] || [ ! -s "$STATE/glance.sqlite" ]; then
	if ! "$GLANCE_MANAGE" --config-file "$CONF" --config-dir "$STATE/conf.d" db_sync \
		>>"$STATE/glance-manage.log" 2>&1 </dev/null 9>&-; then
		tail -n 30 "$STATE/glance-manage.log" >&2
		die "glance-manage db_sync failed (log: $STATE/glance-manage.log)"
	fi
	echo "$VERSION" >"$STATE/db_synced"
fi

# --- start --------------------------------------------------------------------------------------
# The inner shell writes its own pid and execs glance-api, so the pid file is exact whether or
# not setsid had to fork. fd 9 (the lock) is not inherited.
echo "=== $(date -Is) start-glance.sh: starting glance-api on $URL" >>"$LOG"
(cd "$STATE" && exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
	nohup "$GLANCE_API" --config-file "$CONF" --config-dir "$STATE/conf.d" \
	</dev/null >>"$LOG" 2>&1 9>&-) &

deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
	sleep 0.25
	if healthy; then
		if ours; then
			echo "$URL"
			exit 0
		fi
	fi
	if [ -s "$PIDFILE" ] && ! ours; then
		echo "start-glance.sh: glance-api exited; last lines of $LOG:" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
done
echo "start-glance.sh: glance-api did not answer $URL/healthcheck within 60 s; last lines of $LOG:" >&2
tail -n 40 "$LOG" >&2
exit 1
