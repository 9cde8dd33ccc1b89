#!/usr/bin/env bash
# The nginx gateway in front of the API workers (config: ops/gateway/nginx.conf.template).
#
#   ops/gateway.sh start N   render the config for workers on API_BASE_PORT+1 .. +N, start nginx
#                            (or reload it when running), installing nginx first if missing
#   ops/gateway.sh stop      stop it
#   ops/gateway.sh install   install nginx if missing (ops/stack.sh install does it too)
#
# GATEWAY_PORT (8080), API_BASE_PORT (8000: workers listen on 8001..800N), GATEWAY_DIR (.stack/gateway),
# GATEWAY_READ_TIMEOUT_S (30: a worker silent that long gets the client a 504).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STACK="$ROOT/.stack"
DIR="${GATEWAY_DIR:-$STACK/gateway}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
API_BASE_PORT="${API_BASE_PORT:-8000}"
GATEWAY_READ_TIMEOUT_S="${GATEWAY_READ_TIMEOUT_S:-30}"
# Debian's `nginx`: the same name in every release (the smaller nginx-light is not in all of them).
NGINX_PACKAGE=nginx

log() { printf '[gateway] %s\n' "$*" >&2; }
die() { printf '[gateway] ERROR: %s\n' "$*" >&2; exit 1; }

nginx_bin() { command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }

ensure_nginx() {
    nginx_bin >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "nginx is missing: apt-get install $NGINX_PACKAGE (needs root)"
    log "apt-get install $NGINX_PACKAGE"
    # As in ops/stack.sh: keep Debian's maintainer scripts from starting a system nginx on :80.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1; fi
    mkdir -p "$STACK"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$NGINX_PACKAGE" >>"$STACK/apt.log" 2>&1 \
        || { [ "$added" = 1 ] && rm -f "$policy"; die "apt-get install $NGINX_PACKAGE failed (.stack/apt.log)"; }
    [ "$added" = 1 ] && rm -f "$policy"
    return 0
}

render() {
    local workers="$1" servers="" i
    for ((i = 1; i <= workers; i++)); do
        servers+="        server 127.0.0.1:$((API_BASE_PORT + i)) max_fails=2 fail_timeout=5s;"$'\n'
    done
    mkdir -p "$DIR/tmp"
    python3 - "$ROOT/ops/gateway/nginx.conf.template" "$DIR/nginx.conf" "$DIR" "$GATEWAY_PORT" "$servers" \
        "$GATEWAY_READ_TIMEOUT_S" <<'PY'
import sys
src, dst, stack, port, servers, read_timeout_s = sys.argv[1:]
text = open(src).read()
text = text.replace("@STACK@/gateway", stack).replace("@GATEWAY_PORT@", port)
text = text.replace("@PROXY_READ_TIMEOUT_S@", read_timeout_s)
open(dst, "w").write(text.replace("@UPSTREAM_SERVERS@\n", servers))
PY
}

running_pid() {
    local pid
    pid="$(cat "$DIR/nginx.pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case "${1:-}" in
    start)
        workers="${2:?usage: ops/gateway.sh start N}"
        ensure_nginx
        render "$workers"
        "$(nginx_bin)" -t -q -c "$DIR/nginx.conf" -p "$DIR" 2>>"$DIR/error.log" || die "bad nginx config (.stack/gateway/error.log)"
        if pid="$(running_pid)"; then
            log "reloading nginx (pid $pid) for $workers workers"
            kill -HUP "$pid"
        else
            log "starting nginx on 127.0.0.1:$GATEWAY_PORT for $workers workers"
            "$(nginx_bin)" -c "$DIR/nginx.conf" -p "$DIR"
        fi
        ;;
    install) ensure_nginx ;;
    stop)
        if pid="$(running_pid)"; then
            log "stopping nginx (pid $pid)"
            kill -QUIT "$pid"
        fi
        ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
