#!/usr/bin/env bash
# Installs the real servers homing's tests and bench talk to (Debian packages), only when missing.
# Needs root (or sudo) and Debian's package mirror; does nothing when everything is there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || need+=(redis-server)
have redis-cli || need+=(redis-tools)
have nginx || need+=(nginx)
[ -e /usr/share/nginx/modules/ndk_http_module.so ] || [ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
[ -e /usr/share/lua/5.1/nginx/redis.lua ] || need+=(lua-nginx-redis)
have haproxy || need+=(haproxy)
have wrk || need+=(wrk)
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have openssl || need+=(openssl)
have script || need+=(bsdutils)
# The demo test runs the demo's printed commands as a user would.
have curl || need+=(curl)
# integrations/: promtool checks the alert rules and dashboard queries, systemd-analyze the unit.
have promtool || need+=(prometheus)
have systemd-analyze || need+=(systemd)
# The dashboard test drives a headless browser (playwright-core talks to Debian's chromium).
have chromium || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
echo "install-system-deps: installing ${need[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
# Debian starts the packaged daemons; tests start their own on loopback with temp dirs instead.
for svc in nginx haproxy redis-server etcd prometheus; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
