# shellcheck shell=bash
# Sourced by start-openstack.sh, in its shell (its settings, secrets and functions): the Debian packages it needs, and the entry points Debian does not ship.

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
