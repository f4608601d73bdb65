#!/usr/bin/env bash
# run-openstack.sh — the test guest booted by a real nova: bring up the all-in-one OpenStack
# (scripts/start-openstack.sh), upload the project's test guest to Glance, boot a server from it,
# show its console (the guest prints the sha256 of the disk bytes it read), delete it, show that
# its base stayed in instances/_base, and boot a second server of the same image from that base.
# `make run-openstack` runs this after setup and build.
#
# The guest (scripts/build-test-guest.sh: Debian cloud kernel + busybox initramfs) boots the way
# nova's libvirt driver boots AMI-style images, by direct kernel boot: three Glance images,
#   basefs-demo-kernel   disk_format aki   the kernel
#   basefs-demo-ramdisk  disk_format ari   the initramfs, plus one more cpio archive (see below)
#   basefs-demo-disk     disk_format raw   32 MiB (8 MiB random, then zeros): the disk the guest
#                        reads; properties kernel_id, ramdisk_id and os_command_line
#                        ("console=ttyS0 quiet panic=-1 basefs.readsize=<its size>")
# nova fetches each into $INSTANCES/_base/<sha1 of the image id> (raw), copies kernel and ramdisk
# into the instance directory and makes the instance's disk a qcow2 overlay (the flavor's 1 GiB)
# whose backing file is the disk image's base.
#
# nova's console API (`openstack console log show`) reads a *running* guest's console only (for
# a shut-off domain it answers "Guest does not have a console available"), and the test guest
# powers off once it has printed its lines. So the ramdisk image is the guest's initrd.gz followed
# by a second, tiny cpio archive (the kernel unpacks both; the later one wins) holding a new
# /init that defines a shell function poweroff (prints "BASEFS-GUEST holding", then sleeps) and
# sources the guest's own /init, kept unchanged as /init.orig: the guest stays up after its
# checks, and `openstack server delete` ends it as nova ends any server. Nothing else differs
# from the guest `make run` boots. (BASEFS_OPENSTACK_GUEST_HOLD=0 uploads the plain initrd.gz:
# then the console can only be read from $INSTANCES/<uuid>/console.log.)
#
# basefs is nova's instances/_base (the point of this demo); for comparison the same image is first
# booted once on nova's own plain _base directory (nova downloads the whole image), and the summary
# prints both side by side: bytes Glance served for the disk, create -> ACTIVE, create -> the
# guest's checksum line.
#
# Environment (besides start-openstack.sh's, passed on):
#   BASEFS_OPENSTACK_BASEFS     1 (default): mount basefs at $INSTANCES/_base before nova-compute
#                               starts (function mount_basefs below): nova-compute is stopped,
#                               bin/basefs mounts as the Keystone service user basefs
#                               ($STATE/openrc-basefs), then start-openstack.sh starts nova-compute
#                               over the mount. 0: nova's own plain _base directory only.
#   BASEFS_OPENSTACK_COMPARE    1 (default, with BASEFS_OPENSTACK_BASEFS=1): boot once on nova's
#                               plain _base first, for the comparison in the summary; 0 skips it.
#   BASEFS_OPENSTACK_BASEFS_STATE  basefs's --state (default $STATE/basefs)
#   BASEFS_OPENSTACK_BASEFS_ARGS   extra flags for `basefs mount` (word-split)
#   BASEFS_OPENSTACK_BASEFS_BIN    directory of the basefs binary (default <repo>/bin)
#                               The mount stays after the demo (nova-compute uses it); to end it,
#                               stop nova-compute first (scripts/stop-openstack.sh nova-compute),
#                               then SIGTERM the pid in $work/basefs-mount.pid.
#   BASEFS_OPENSTACK_DEMO_DIR   work files (default <repo>/.cache/openstack-demo)
#   BASEFS_OPENSTACK_KEEP=1     leave the second server running at the end (default: deleted)
#   BASEFS_OPENSTACK_GUEST_HOLD see above (default 1)
#   BASEFS_OPENSTACK_AKI=0      upload kernel and ramdisk as disk_format raw, container_format bare
#                               instead of aki/aki and ari/ari (nova does not care: it fetches both
#                               with fetch_raw_image, no conversion, into _base/<sha1 of the id>;
#                               a basefs that serves only bare containers needs this)
#
# Before booting, the demo deletes the servers and images a previous run left (names basefs-demo-*)
# and uploads fresh images (new random disk data, so the first boot starts from a cold _base).
# Exit status 0 only if both servers went ACTIVE and printed the disk's sha256.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BASEFS_OPENSTACK_BASEFS_BIN:-$top/bin}
export BASEFS_OPENSTACK_DIR=${BASEFS_OPENSTACK_DIR:-/var/lib/basefs-openstack}
export BASEFS_OPENSTACK_INSTANCES=${BASEFS_OPENSTACK_INSTANCES:-$BASEFS_OPENSTACK_DIR/instances}
STATE=$BASEFS_OPENSTACK_DIR
INSTANCES=$BASEFS_OPENSTACK_INSTANCES
USE_BASEFS=${BASEFS_OPENSTACK_BASEFS:-1}
COMPARE=${BASEFS_OPENSTACK_COMPARE:-1}
[ "$USE_BASEFS" = 1 ] || COMPARE=0
BASEFS_STATE=${BASEFS_OPENSTACK_BASEFS_STATE:-$STATE/basefs}
work=${BASEFS_OPENSTACK_DEMO_DIR:-$top/.cache/openstack-demo}
guest=$top/.cache/test-guest
HOLD=${BASEFS_OPENSTACK_GUEST_HOLD:-1}
AKI=${BASEFS_OPENSTACK_AKI:-1}
PY=/usr/bin/python3
# The openstack CLI is Debian's (/usr/bin/openstack, Debian's python); 2.37 allows --nic none.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
os() { /usr/bin/openstack --os-compute-api-version 2.37 "$@"; }

say() { printf '\n== %s\n' "$*"; }
die() { echo "run-openstack.sh: FAIL: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$work"

# --- basefs at $INSTANCES/_base ---------------------------------------------------------------------
# mount_basefs: called with Keystone and Glance up and nova-compute not running. It mounts basefs
# at $INSTANCES/_base (a read-only FUSE file system of the Glance images under nova's names,
# fetched lazily), authenticated to Keystone as the service user basefs, and returns once the
# daemon answers. Its log: $work/basefs-mount.log; its pid: $work/basefs-mount.pid.
mount_basefs() {
	local base=$INSTANCES/_base pid
	[ -x "$bin/basefs" ] || die "$bin/basefs is missing: run make build"
	mkdir -p "$base" "$BASEFS_STATE"
	if mountpoint -q "$base"; then
		if "$bin/basefs" status --base "$base" >/dev/null 2>&1; then
			echo "basefs already serves $base"
			return 0
		fi
		die "$base is a mount point that basefs does not answer for; unmount it first"
	fi
	# nova's own files from runs without basefs (plain bases) would be hidden under the mount.
	if [ -n "$(ls -A "$base" 2>/dev/null)" ]; then
		# (the comparison boot's, or an earlier run's; the last set is kept, nothing accumulates)
		echo "moving nova's plain bases aside to $INSTANCES/_base.plain"
		rm -rf "$INSTANCES/_base.plain"
		mv "$base" "$INSTANCES/_base.plain"
		mkdir -p "$base"
	fi
	# shellcheck disable=SC2086 # BASEFS_OPENSTACK_BASEFS_ARGS is a list of flags
	(
		# shellcheck disable=SC1091
		. "$STATE/openrc-basefs"
		exec setsid "$bin/basefs" mount --state "$BASEFS_STATE" --instances-path "$INSTANCES" \
			${BASEFS_OPENSTACK_BASEFS_ARGS:-} "$base"
	) </dev/null >>"$work/basefs-mount.log" 2>&1 &
	pid=$!
	echo "$pid" >"$work/basefs-mount.pid"
	for _ in $(seq 1 100); do
		"$bin/basefs" status --base "$base" >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$work/basefs-mount.log" >&2; die "basefs mount exited"; }
		sleep 0.1
	done
	"$bin/basefs" status --base "$base" >/dev/null 2>&1 || die "basefs did not answer at $base within 10 s"
	echo "basefs (pid $pid) serves $base, state $BASEFS_STATE, as Keystone user basefs"
}

# start_openstack: scripts/start-openstack.sh, its admin credentials taken into this shell; a
# start that fails stops the demo here (its message says why).
start_openstack() {
	local creds
	creds=$("$top/scripts/start-openstack.sh") || die "scripts/start-openstack.sh failed (see its message above)"
	eval "$creds"
	[ -n "${OS_AUTH_URL:-}" ] || die "scripts/start-openstack.sh printed no credentials"
}

# use_basefs: nova-compute on basefs at $INSTANCES/_base (nova-compute must not run while _base
# changes under it: stopped first, started again over the mount).
use_basefs() {
	if ! mountpoint -q "$INSTANCES/_base"; then
		"$top/scripts/stop-openstack.sh" nova-compute
	fi
	BASEFS_OPENSTACK_COMPUTE=0 "$top/scripts/start-openstack.sh" >/dev/null ||
		die "scripts/start-openstack.sh failed (see its message above)"
	mount_basefs
	start_openstack
}

# use_plain: nova-compute on nova's own plain _base directory: a basefs mount there (an earlier
# run's) is stopped first, with nova-compute.
use_plain() {
	if mountpoint -q "$INSTANCES/_base"; then
		"$top/scripts/stop-openstack.sh" nova-compute
		stop_basefs
	fi
	start_openstack
}

# stop_basefs: SIGTERM the supervisor of the daemon serving $INSTANCES/_base (it unmounts; its
# pid is the mount root's user.basefs.supervisor attribute) and wait until the mount is gone.
stop_basefs() {
	local base=$INSTANCES/_base pid
	pid=$("$PY" -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.basefs.supervisor").decode())' "$base" 2>/dev/null || true)
	[ -n "$pid" ] || die "$base is a mount point but no basefs answers for it; unmount it first"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		mountpoint -q "$base" || return 0
		sleep 0.1
	done
	die "basefs (pid $pid) did not unmount $base within 30 s"
}

# glance_bytes OFFSET ID: bytes Glance's access log records for GET /v2/images/ID/file after
# OFFSET (eventlet's log lines; response headers included, a few hundred bytes a request).
glance_log=$STATE/log/glance.log
glance_offset() { stat -c %s "$glance_log" 2>/dev/null || echo 0; }
glance_bytes() {
	tail -c +"$(($1 + 1))" "$glance_log" 2>/dev/null |
		awk -v id="$2" 'match($0, "\"GET /v2/images/" id "/file HTTP/1\\.[01]\" (200|206) [0-9]+") {
			n = split(substr($0, RSTART, RLENGTH), f, " "); sum += f[n] } END { printf "%d", sum }'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- the cloud ------------------------------------------------------------------------------------
say "building the test guest (Debian cloud kernel + busybox initramfs)"
"$top/scripts/build-test-guest.sh" "$guest" >/dev/null

t=$(now)
if [ "$USE_BASEFS" = 1 ] && [ "$COMPARE" = 0 ]; then
	say "starting OpenStack without nova-compute, then basefs at $INSTANCES/_base, then nova-compute"
	use_basefs
else
	say "starting OpenStack (scripts/start-openstack.sh; state in $STATE) on nova's plain _base"
	use_plain
fi
up_s=$(since "$t")
echo "OpenStack up after $up_s s; admin credentials: $STATE/openrc; basefs's: $STATE/openrc-basefs"
TOKEN=$(os token issue -f value -c id)
os compute service list -c Binary -c Host -c State
os hypervisor list -c "Hypervisor Hostname" -c "Hypervisor Type" -c State

# --- leftovers of an earlier run ----------------------------------------------------------------------
old_servers=$(os server list --all-projects -f value -c ID -c Name | awk '$2 ~ /^basefs-demo-/ {print $1}')
if [ -n "$old_servers" ]; then
	say "deleting servers of an earlier run"
	# shellcheck disable=SC2086
	os server delete --wait $old_servers
fi
old_images=$(os image list -f value -c ID -c Name | awk '$2 ~ /^basefs-demo-/ {print $1}')
if [ -n "$old_images" ]; then
	say "deleting images of an earlier run"
	# shellcheck disable=SC2086
	os image delete $old_images
fi

# --- images ---------------------------------------------------------------------------------------
say "uploading the guest to Glance: kernel ($([ "$AKI" = 1 ] && echo aki || echo raw)), ramdisk ($([ "$AKI" = 1 ] && echo ari || echo raw)), a 32 MiB raw disk"
ramdisk=$guest/initrd.gz
if [ "$HOLD" = 1 ]; then
	ramdisk=$work/initrd-hold.gz
	# The guest's /init, kept byte for byte as /init.orig, run by a new /init that first defines a
	# shell function poweroff (busybox's sh runs its applets ahead of PATH, so a /bin/poweroff
	# would not be used; a function comes first). A newc cpio archive, gzipped, after the guest's
	# own (the host has no cpio).
	"$PY" - "$guest/initrd.gz" "$ramdisk" <<'EOF'
import gzip, sys
wrapper = b"""#!/bin/sh
# From basefs scripts/run-openstack.sh: the test guest's /init (now /init.orig), with its final
# poweroff replaced by a wait, so that nova's console API (which reads a running guest's console
# only) can show what it printed. `openstack server delete` ends the guest.
poweroff() {
	echo "BASEFS-GUEST holding: poweroff replaced by scripts/run-openstack.sh"
	while :; do sleep 3600; done
}
. /init.orig
"""
def entries(data):
    off = 0
    while off + 110 <= len(data):
        if data[off:off + 6] != b"070701":
            raise SystemExit("initrd: not a newc cpio archive at %d" % off)
        f = [int(data[off + 6 + 8 * k: off + 14 + 8 * k], 16) for k in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[off + 110: off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off: off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return
        yield name, mode, body
def entry(ino, name, mode, data=b""):
    name = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0]
    out = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    out += b"\0" * (-len(out) % 4)
    return out + data + b"\0" * (-len(data) % 4)
with open(sys.argv[1], "rb") as f:
    orig = f.read()
init = [body for name, mode, body in entries(gzip.decompress(orig)) if name in ("init", "./init")]
if len(init) != 1:
    raise SystemExit("initrd: no /init")
arc = entry(1, "init.orig", 0o100755, init[0]) + entry(2, "init", 0o100755, wrapper) + entry(3, "TRAILER!!!", 0)
with open(sys.argv[2], "wb") as f:
    f.write(orig + gzip.compress(arc))
EOF
fi
head -c 8M /dev/urandom >"$work/disk.raw"
truncate -s 32M "$work/disk.raw"
size=$(stat -c %s "$work/disk.raw")
want=$(sha256sum <"$work/disk.raw" | cut -d' ' -f1)
echo "sha256 of the disk image: $want"
t=$(now)
if [ "$AKI" = 1 ]; then
	kfmt=(--disk-format aki --container-format aki) rfmt=(--disk-format ari --container-format ari)
else
	kfmt=(--disk-format raw --container-format bare) rfmt=(--disk-format raw --container-format bare)
fi
kernel_id=$(os image create -f value -c id "${kfmt[@]}" --file "$guest/vmlinuz" basefs-demo-kernel)
ramdisk_id=$(os image create -f value -c id "${rfmt[@]}" --file "$ramdisk" basefs-demo-ramdisk)
cmdline="console=ttyS0 quiet panic=-1 basefs.readsize=$size"
disk_id=$(os image create -f value -c id --disk-format raw --container-format bare \
	--file "$work/disk.raw" --property kernel_id="$kernel_id" --property ramdisk_id="$ramdisk_id" \
	--property os_command_line="$cmdline" basefs-demo-disk)
upload_s=$(since "$t")
os image list -c ID -c Name -c Status
sha1() { printf '%s' "$1" | sha1sum | cut -d' ' -f1; }
disk_base=$(sha1 "$disk_id") kernel_base=$(sha1 "$kernel_id") ramdisk_base=$(sha1 "$ramdisk_id")
echo "nova's names in _base (sha1 of the image id): disk $disk_base, kernel $kernel_base, ramdisk $ramdisk_base"
show_bases() {
	local f
	for f in "$disk_base:disk" "$kernel_base:kernel" "$ramdisk_base:ramdisk"; do
		if [ -e "$INSTANCES/_base/${f%%:*}" ]; then
			printf '%-8s %s\n' "${f#*:}" "$(ls -l "$INSTANCES/_base/${f%%:*}")"
		else
			printf '%-8s %s\n' "${f#*:}" "(no $INSTANCES/_base/${f%%:*})"
		fi
	done
}

if ! os flavor show basefs-demo-small >/dev/null 2>&1; then
	os flavor create --ram 256 --disk 1 --vcpus 1 basefs-demo-small >/dev/null
fi
echo "flavor basefs-demo-small: 1 vCPU, 256 MiB, 1 GiB root disk"

# boot NAME: `openstack server create --wait`, and meanwhile poll nova's API (curl with the
# admin's token, every 0.2 s) for the moment the server is ACTIVE (the CLI's --wait polls every
# 5 s); then wait for the guest's sha256 line. Sets server_id, active_s (create command ->
# ACTIVE), wait_s (-> the CLI returned) and sum_s (-> the sha256 line in the console).
NOVA_API="http://127.0.0.1:${BASEFS_OPENSTACK_NOVA_PORT:-8774}/v2.1"
boot() {
	local name=$1 t0 out cli st="" deadline
	t0=$(now)
	# (--wait writes its progress to stdout too: the id is the last line)
	os server create -f value -c id --flavor basefs-demo-small --image "$disk_id" \
		--nic none --wait "$name" >"$work/create-$name.out" 2>&1 &
	cli=$!
	active_s=
	deadline=$((SECONDS + 300))
	while [ "$SECONDS" -lt "$deadline" ]; do
		out=$(curl -sf --max-time 5 -H "X-Auth-Token: $TOKEN" "$NOVA_API/servers/detail?name=%5E$name%24" || true)
		st=$(grep -o '"status": *"[A-Z_]*"' <<<"$out" | head -n1 | sed 's/.*"\([A-Z_]*\)"$/\1/' || true)
		case "$st" in
		ACTIVE) active_s=$(since "$t0"); break ;;
		ERROR) break ;;
		esac
		kill -0 "$cli" 2>/dev/null || [ -n "$st" ] || break
		sleep 0.2
	done
	wait "$cli" || { cat "$work/create-$name.out" >&2; die "openstack server create $name failed"; }
	wait_s=$(since "$t0")
	server_id=$(tail -n 1 "$work/create-$name.out")
	[[ "$server_id" =~ ^[0-9a-f-]{36}$ ]] || { cat "$work/create-$name.out" >&2; die "server create $name printed no server id"; }
	st=$(os server show -f value -c status "$server_id")
	[ "$st" = ACTIVE ] || {
		os server show -f value -c fault "$server_id" >&2 || true
		die "$name is $st, not ACTIVE"
	}
	[ -n "$active_s" ] || active_s=$wait_s
	echo "$name ($server_id) ACTIVE after $active_s s (the CLI's --wait returned after $wait_s s)"
	# The moment the line appears is taken from the console log virtlogd writes
	# ($INSTANCES/<uuid>/console.log, polled every 0.1 s); it is then shown through nova's API.
	sum_s=
	local log=$INSTANCES/$server_id/console.log deadline=$((SECONDS + 120))
	while [ "$SECONDS" -lt "$deadline" ]; do
		if grep -qs 'BASEFS-GUEST \(sha256\|error\)' "$log"; then
			sum_s=$(since "$t0")
			break
		fi
		sleep 0.1
	done
	[ -n "$sum_s" ] || die "$name printed no sha256 line within 120 s of going ACTIVE (see $log)"
	local console
	if console=$(os console log show "$server_id" 2>/dev/null); then
		say "console of $name (openstack console log show $server_id)"
	else
		# A guest that powered off (BASEFS_OPENSTACK_GUEST_HOLD=0): nova's API has no console.
		say "console of $name ($log; nova's console API has none for a shut-off guest)"
		console=$(cat "$log")
	fi
	console=$(tr -d '\r' <<<"$console")
	grep -E '^BASEFS-|Power down' <<<"$console" || true
	if grep -qx "BASEFS-GUEST sha256=$want bytes=$size" <<<"$console"; then
		echo "OK: $name read exactly the image's bytes (sha256 $want) — line seen $sum_s s after the create command"
	else
		die "$name's sha256 differs from the image's ($want)"
	fi
}

# --- nova's plain _base, for comparison ------------------------------------------------------------
if [ "$COMPARE" = 1 ]; then
	say "for comparison: openstack server create --nic none --wait basefs-demo-plain on nova's plain _base (nova downloads the whole image)"
	off=$(glance_offset)
	boot basefs-demo-plain
	plain_active=$active_s plain_sum=$sum_s plain_glance=$(glance_bytes "$off" "$disk_id")
	os server delete --wait "$server_id"
	say "switching nova-compute to basefs at $INSTANCES/_base"
	use_basefs
	TOKEN=$(os token issue -f value -c id)
fi

# --- first server -----------------------------------------------------------------------------------
say "openstack server create --nic none --wait basefs-demo-1 (cold: $([ "$USE_BASEFS" = 1 ] && echo "basefs fetches what the guest reads" || echo "nova fetches the images into _base"))"
off=$(glance_offset)
boot basefs-demo-1
first_active=$active_s first_sum=$sum_s first_wait=$wait_s first_glance=$(glance_bytes "$off" "$disk_id")
say "this image's files in instances/_base, and the instance's disk"
show_bases
qemu-img info -U "$INSTANCES/$server_id/disk" | grep -E '^(image|virtual size|backing file)'

say "openstack server delete basefs-demo-1"
t=$(now)
os server delete --wait "$server_id"
delete_s=$(since "$t")
echo "deleted after $delete_s s"
[ -e "$INSTANCES/_base/$disk_base" ] || die "the base $disk_base left _base with the server"
echo "the bases stayed in $INSTANCES/_base (nova removes unused ones only after"
echo "remove_unused_original_minimum_age_seconds):"
show_bases
[ ! -e "$INSTANCES/$server_id" ] || die "the instance directory $INSTANCES/$server_id is still there"

# --- second server ----------------------------------------------------------------------------------
say "openstack server create --nic none --wait basefs-demo-2 (same image: its base is in _base)"
boot basefs-demo-2
second_active=$active_s second_sum=$sum_s second_wait=$wait_s
if [ "${BASEFS_OPENSTACK_KEEP:-0}" != 1 ]; then
	os server delete --wait "$server_id"
	echo "basefs-demo-2 deleted (BASEFS_OPENSTACK_KEEP=1 keeps it)"
fi

say "summary"
[ "$USE_BASEFS" = 1 ] && kind="basefs _base" || kind="nova's plain _base"
printf '%-44s %s\n' "OpenStack up (start-openstack.sh)" "$up_s s" \
	"image upload (3 images)" "$upload_s s" \
	"server 1 ($kind, cold): create -> ACTIVE" "$first_active s (--wait returned after $first_wait s)" \
	"server 1: create -> guest's sha256 line" "$first_sum s" \
	"server 1: Glance served for the disk" "$(mib "$first_glance") of the $(mib "$size") image" \
	"server 1: delete --wait" "$delete_s s" \
	"server 2 (warm _base): create -> ACTIVE" "$second_active s (--wait returned after $second_wait s)" \
	"server 2: create -> guest's sha256 line" "$second_sum s"
if [ "$COMPARE" = 1 ]; then
	echo
	printf '%-36s %22s %22s\n' "cold boot of the same image" "nova's plain _base" "basefs _base"
	printf '%-36s %22s %22s\n' "Glance served for the disk" "$(mib "$plain_glance")" "$(mib "$first_glance")" \
		"create -> ACTIVE" "$plain_active s" "$first_active s" \
		"create -> guest's sha256 line" "$plain_sum s" "$first_sum s"
	echo "(BASEFS_OPENSTACK_COMPARE=0 skips the plain boot)"
fi
echo "PASS"
