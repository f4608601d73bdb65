# shellcheck shell=bash
# Sourced by start-openstack.sh, in its shell (its settings, secrets and functions): health checks, then each service kept or (re)started in order, with its one-time steps.

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
k=$(printf '%s\n' "roles admin basefs:basefs" "$KEYSTONE_URL $GLANCE_URL $PLACEMENT_URL $NOVA_URL $NEUTRON_URL" "$(sha256sum "$SECRETS")" | sha256sum | cut -c1-16)
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
# The basefs service role: the only one Glance lets write basefs_manifest (property protections).
basefs_role = one(ks.roles.list(name="basefs"), "basefs role") or ks.roles.create("basefs")
ks.roles.grant(basefs_role, user=one(ks.users.list(name="basefs", domain=domain), "user basefs"), project=project)
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
ensure glance "$GLANCE_PORT" "$(conf_hash "$STATE/glance/glance-api.conf" "$STATE/glance/glance-api-paste.ini" "$STATE/glance/property-protections.conf")" \
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
