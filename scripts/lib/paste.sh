# shellcheck shell=bash
# Sourced by start-glance.sh and start-openstack.sh: the paste sections their services share.

# paste_healthcheck filter|app DISABLE_FILE: oslo.middleware's healthcheck as a paste filter or
# application (it reports 503 while DISABLE_FILE exists).
paste_healthcheck() {
	local factory=factory
	[ "$1" = app ] && factory=app_factory
	cat <<EOF
[$1:healthcheck]
paste.$1_factory = oslo_middleware:Healthcheck.$factory
backends = disable_by_file
disable_by_file_path = $2
EOF
}

# glance_paste_apps DISABLE_FILE: the paste sections of Glance's API application and the
# filters both pipelines use (the healthcheck reports 503 while DISABLE_FILE exists).
glance_paste_apps() {
	cat <<EOF
[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

$(paste_healthcheck filter "$1")

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory
EOF
}
