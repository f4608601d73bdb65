# shellcheck shell=bash
# Sourced by start-openstack.sh, in its shell (its settings, secrets and functions): every service's configuration, rewritten on each run.

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
# basefs_manifest is the manifest basefs hosts trust for an image: only the basefs role writes it.
property_protection_file = $STATE/glance/property-protections.conf
property_protection_rule_format = roles

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
# Glance property protections (roles): basefs_manifest names the manifest every basefs host
# trusts for an image (cache/glanceimg doc.go), so only the basefs service role may create,
# change or delete it; everyone may read it. Every other property stays as Glance has it. The
# first section whose pattern matches a property applies.
write "$STATE/glance/property-protections.conf" <<'EOF'
# Written by basefs scripts/start-openstack.sh.
[^basefs_manifest$]
create = basefs
read = @
update = basefs
delete = basefs

[.*]
create = @
read = @
update = @
delete = @
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
