#!/usr/bin/env bash
# start-ceph.sh — run a real one-node Ceph (one mon, one memstore OSD, radosgw) on 127.0.0.1: the
# S3 engine behind the s3:// tier tests (Ceph RGW is what OpenStack clouds already run).
#
#   eval "$(scripts/start-ceph.sh)"   install if missing, start (or find running), print the env
#   scripts/stop-ceph.sh              stop everything of this state directory (same environment)
#   scripts/stop-ceph.sh rgw          stop only radosgw (the cluster and its data stay; a later
#                                     start-ceph.sh starts radosgw again, ~1 s)
#
# Environment:
#   BASEFS_CEPH_DIR          state directory (default /var/lib/basefs-ceph)
#   BASEFS_CEPH_RGW_PORT     radosgw's S3 port on 127.0.0.1 (default 7480)
#   BASEFS_CEPH_MON_PORT     the monitor's msgr2 port on 127.0.0.1 (default 3300)
#   BASEFS_CEPH_MEM_BYTES    memstore size: all object data lives in the OSD's RAM (default 2 GiB)
#   BASEFS_CEPH_ACCESS_KEY   the S3 user's access key (default basefs-test-access)
#   BASEFS_CEPH_SECRET_KEY   its secret key (default basefs-test-secret)
#
# On success prints, one per line, what S3 clients need (shell syntax, for eval):
#   AWS_ENDPOINT_URL=http://127.0.0.1:PORT  AWS_ACCESS_KEY_ID=…  AWS_SECRET_ACCESS_KEY=…  AWS_REGION=…
# and exits 0; progress and errors go to stderr. Idempotent: when mon, OSD and radosgw of this
# state directory run and radosgw answers, it does nothing else (~50 ms). When only radosgw is
# down it starts radosgw alone (the data stays). When the mon or the OSD is down the cluster is
# made anew: memstore keeps data in the OSD's memory, so a stopped OSD has lost it anyway.
#
# Everything lives in the state directory (ceph.conf, mon/, osd/, run/ with pid files and admin
# sockets, log/); nothing global is configured or started, so several clusters with distinct
# directories and ports run side by side. Authentication inside the cluster is off (cephx
# none): a private loopback test cluster, never to be bound elsewhere.
#
# The measured recipe (../shared/HOST-NOTES.md): the packages radosgw ceph-mon ceph-osd with
# --no-install-recommends; `ms mon client mode = crc secure` or radosgw hangs 300 s fetching
# the mon config; pool size one allowed.
set -euo pipefail

die() { echo "start-ceph.sh: $*" >&2; exit 1; }
say() { echo "start-ceph.sh: $*" >&2; }
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

STATE=${BASEFS_CEPH_DIR:-/var/lib/basefs-ceph}
RGW_PORT=${BASEFS_CEPH_RGW_PORT:-7480}
MON_PORT=${BASEFS_CEPH_MON_PORT:-3300}
MEM_BYTES=${BASEFS_CEPH_MEM_BYTES:-$((2 << 30))}
ACCESS=${BASEFS_CEPH_ACCESS_KEY:-basefs-test-access}
SECRET=${BASEFS_CEPH_SECRET_KEY:-basefs-test-secret}
REGION=us-east-1 # RGW does not check the region of a signature; minio-go then skips a lookup
for p in "$RGW_PORT" "$MON_PORT"; do
	[[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "$p is not a port number"
done
[ "$RGW_PORT" != "$MON_PORT" ] || die "BASEFS_CEPH_RGW_PORT and BASEFS_CEPH_MON_PORT must differ"
case "$STATE" in /*) ;; *) STATE=$(pwd -P)/$STATE ;; esac
CONF="$STATE/ceph.conf"
RUN="$STATE/run"
URL="http://127.0.0.1:$RGW_PORT"
C=(-c "$CONF")

print_env() {
	printf 'AWS_ENDPOINT_URL=%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_REGION=%s\n' \
		"$URL" "$ACCESS" "$SECRET" "$REGION"
}

alive() { # $1: name of a pid file in run/, $2: program; true if that program runs with it
	local pid
	[ -s "$RUN/$1.pid" ] || return 1
	pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF"
}
rgw_answers() { curl -s -o /dev/null --max-time 3 "$URL/"; }
configured_port() { sed -n 's/^rgw frontends = beast endpoint=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CONF" 2>/dev/null; }
cluster_up() { alive mon.a ceph-mon && alive osd.0 ceph-osd && [ "$(sed -n 's/^# mon port //p' "$CONF" 2>/dev/null)" = "$MON_PORT" ]; }

# Fast path: everything runs and answers.
if cluster_up && alive rgw radosgw && [ "$(configured_port)" = "$RGW_PORT" ] && rgw_answers; then
	print_env
	exit 0
fi

mkdir -p "$STATE"
chmod 700 "$STATE"
exec 9>"$STATE/.lock"
flock -w 300 9 || die "another start-ceph.sh holds $STATE/.lock"

# --- install ------------------------------------------------------------------------------------
installed() {
	for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
		command -v "$b" >/dev/null || return 1
	done
}
if ! installed; then
	[ "$(id -u)" = 0 ] || die "Ceph is not installed and only root can install it"
	say "installing radosgw ceph-mon ceph-osd (--no-install-recommends)"
	pkgs=(radosgw ceph-mon ceph-osd)
	command -v curl >/dev/null || pkgs+=(curl)
	apt_install() {
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
			--no-install-recommends "${pkgs[@]}" >>"$STATE/apt.log" 2>&1
	}
	if ! apt_install; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$STATE/apt.log" 2>&1 || true
		apt_install || { tail -n 30 "$STATE/apt.log" >&2; die "apt-get install ${pkgs[*]} failed (log: $STATE/apt.log)"; }
	fi
	installed || die "installed the packages, but a Ceph program is still missing"
fi

# Stopping is stop-ceph.sh's (only processes of this directory are signalled); it finds the
# same directory through BASEFS_CEPH_DIR.
stop_ceph() { BASEFS_CEPH_DIR="$STATE" "$(dirname "${BASH_SOURCE[0]}")/stop-ceph.sh" "$@" 9>&-; }


start_rgw() {
	port_free "$RGW_PORT" || port_taken_die "$RGW_PORT" radosgw BASEFS_CEPH_RGW_PORT
	radosgw "${C[@]}" -n client.rgw.a >>"$STATE/log/radosgw.out" 2>&1 9>&- ||
		{ tail -n 20 "$STATE/log/"*rgw* >&2; die "radosgw failed to start"; }
	for _ in $(seq 1 240); do
		rgw_answers && return 0
		alive rgw radosgw || { sleep 0.5; alive rgw radosgw || { tail -n 30 "$STATE/log/ceph-client.rgw.a.log" >&2; die "radosgw exited"; }; }
		sleep 0.25
	done
	tail -n 30 "$STATE/log/ceph-client.rgw.a.log" >&2
	die "radosgw did not answer on $URL within 60 s"
}

ensure_user() {
	if radosgw-admin "${C[@]}" user info --uid basefs >/dev/null 2>&1; then
		return 0
	fi
	radosgw-admin "${C[@]}" user create --uid basefs --display-name "basefs tests" \
		--access-key "$ACCESS" --secret-key "$SECRET" >>"$STATE/log/radosgw-admin.out" 2>&1 ||
		die "radosgw-admin user create failed (log: $STATE/log/radosgw-admin.out)"
}

# Only radosgw is down (or listens elsewhere): start it alone, the cluster's data stays.
if cluster_up && [ "$(configured_port)" = "$RGW_PORT" ]; then
	stop_ceph rgw
	say "starting radosgw on $URL"
	start_rgw
	ensure_user
	print_env
	exit 0
fi

# --- a new cluster --------------------------------------------------------------------------------
stop_ceph
rm -rf "$STATE/mon" "$STATE/osd" "$RUN" "$STATE/log" "$STATE/monmap" "$CONF"
mkdir -p "$STATE/mon" "$STATE/osd/ceph-0" "$RUN" "$STATE/log"
port_free "$MON_PORT" || port_taken_die "$MON_PORT" ceph-mon BASEFS_CEPH_MON_PORT
port_free "$RGW_PORT" || port_taken_die "$RGW_PORT" radosgw BASEFS_CEPH_RGW_PORT

FSID=$(cat /proc/sys/kernel/random/uuid)
cat >"$CONF" <<EOF
# written by basefs scripts/start-ceph.sh; rewritten when the cluster is made anew
# mon port $MON_PORT
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
run dir = $RUN
admin socket = $RUN/\$name.asok
pid file = $RUN/\$name.pid
log file = $STATE/log/\$cluster-\$name.log
log to stderr = false
err to stderr = true
mon data = $STATE/mon/\$cluster-\$id
osd data = $STATE/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $MEM_BYTES
keyring = $STATE/keyring

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $STATE/rgw
pid file = $RUN/rgw.pid
EOF
mkdir -p "$STATE/rgw"
: >"$STATE/keyring"

say "making a one-node cluster in $STATE (mon 127.0.0.1:$MON_PORT, memstore $MEM_BYTES bytes)"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$STATE/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$STATE/monmap" >"$STATE/log/mon-mkfs.out" 2>&1 ||
	{ cat "$STATE/log/mon-mkfs.out" >&2; die "ceph-mon --mkfs failed"; }
ceph-mon "${C[@]}" -i a >>"$STATE/log/ceph-mon.out" 2>&1 9>&- || die "ceph-mon failed to start (log: $STATE/log/ceph-mon.a.log)"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(timeout 60 ceph "${C[@]}" --connect-timeout 30 osd new "$OSD_UUID" 2>>"$STATE/log/ceph-cli.out") ||
	die "ceph osd new failed: the mon does not answer (log: $STATE/log/ceph-mon.a.log)"
[ "$OSD_ID" = 0 ] || die "ceph osd new gave id $OSD_ID; want 0"
ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$STATE/log/osd-mkfs.out" 2>&1 ||
	{ cat "$STATE/log/osd-mkfs.out" >&2; die "ceph-osd --mkfs failed"; }
ceph-osd "${C[@]}" -i 0 >>"$STATE/log/ceph-osd.out" 2>&1 9>&- || die "ceph-osd failed to start (log: $STATE/log/ceph-osd.0.log)"
say "starting radosgw on $URL"
start_rgw
ensure_user
print_env
