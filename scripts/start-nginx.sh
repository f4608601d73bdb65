#!/usr/bin/env bash
# start-nginx.sh — serve a published basefs directory with Debian's nginx on 127.0.0.1.
#
#   scripts/start-nginx.sh ROOT PORT     start (or re-point) nginx serving ROOT on 127.0.0.1:PORT
#   scripts/start-nginx.sh --stop PORT   stop the nginx this script started on PORT
#
# ROOT is a directory in the layout of chunkstore/local (chunks/, manifests/); the origin URL is
# then http://127.0.0.1:PORT/. nginx runs in the background with a private configuration in
# STATE=${BASEFS_NGINX_DIR:-${TMPDIR:-/tmp}/basefs-nginx-PORT}: nginx.conf, nginx.pid, error.log
# (access log off), its own temp directories; nothing global is touched. Stop it with
# `--stop PORT`, `nginx -c $STATE/nginx.conf -s quit`, or `kill $(cat $STATE/nginx.pid)`.
#
# Prints nothing and exits 0 once the port answers. Idempotent: run again with the same PORT it
# rewrites the configuration and reloads the running nginx (so ROOT may change).
# The Go tests of chunkstore/httpstore start their own nginx the same way and do not need this.
set -euo pipefail

die() { echo "start-nginx.sh: $*" >&2; exit 1; }
# shellcheck source=lib/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || NGINX=$(command -v nginx 2>/dev/null) || die "nginx not found (install nginx-light: scripts/setup-host.sh)"

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
state_dir() { echo "${BASEFS_NGINX_DIR:-${TMPDIR:-/tmp}/basefs-nginx-$1}"; }
running() { [ -s "$1/nginx.pid" ] && alive "$(cat "$1/nginx.pid")"; }

if [ "${1:-}" = "--stop" ]; then
	[ $# -eq 2 ] && valid_port "$2" || die "usage: start-nginx.sh --stop PORT"
	state=$(state_dir "$2")
	if running "$state"; then
		pid=$(cat "$state/nginx.pid")
		# QUIT: nginx finishes the requests it serves; KILL after 5 s.
		stop_pid "$pid" 5 QUIT || die "nginx (pid $pid) did not stop"
	fi
	exit 0
fi

[ $# -eq 2 ] || die "usage: start-nginx.sh ROOT PORT  (or --stop PORT)"
valid_port "$2" || die "port $2 is not a number between 1 and 65535"
[ -d "$1" ] || die "root $1 is not a directory"
root=$(cd "$1" && pwd -P)
port=$2
state=$(state_dir "$port")
mkdir -p "$state/tmp"
chmod 700 "$state"

# As root, nginx's workers would switch to nobody, who may not read ROOT (or a 0700 temp dir
# above it); this is a private server on loopback, so they keep the caller's identity.
user=""
[ "$(id -u)" = 0 ] && user="user root;"

cat >"$state/nginx.conf.new" <<EOF
# Written by scripts/start-nginx.sh; rewritten on every run.
$user
worker_processes 1;
pid $state/nginx.pid;
error_log $state/error.log warn;
events { worker_connections 512; }
http {
	access_log off;
	log_not_found off;
	sendfile on;
	tcp_nopush on;
	server_tokens off;
	default_type application/octet-stream;
	client_body_temp_path $state/tmp/body;
	proxy_temp_path $state/tmp/proxy;
	fastcgi_temp_path $state/tmp/fastcgi;
	uwsgi_temp_path $state/tmp/uwsgi;
	scgi_temp_path $state/tmp/scgi;
	server {
		listen 127.0.0.1:$port;
		root $root;
	}
}
EOF
mv "$state/nginx.conf.new" "$state/nginx.conf"

if running "$state"; then
	"$NGINX" -p "$state" -e "$state/error.log" -c "$state/nginx.conf" -s reload 2>>"$state/error.log" ||
		die "nginx reload failed; see $state/error.log"
else
	# nginx binds the port before it daemonizes, so a busy port fails here, with its message.
	"$NGINX" -p "$state" -e "$state/error.log" -c "$state/nginx.conf" ||
		die "nginx did not start on 127.0.0.1:$port; see $state/error.log"
fi

answers() { running "$state" && ! port_free "$port"; }
wait_until 50 answers || die "nginx on 127.0.0.1:$port did not answer within 5 s; see $state/error.log"
