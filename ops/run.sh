#!/usr/bin/env bash
# Run the whole system locally: stack up, then the API (python -m api) and the writers in the
# background, then the demo (ops/demo.py) against the API.
#
#   ops/run.sh          start (what is already running is left alone) and run the demo
#   ops/run.sh stop     stop the API and the writers (the stack stays up: ops/stack.sh down)
#
# Logs and pid files: .stack/api.log, .stack/api.pid, .stack/writers.log, .stack/writers.pid,
# .stack/notices.log, .stack/notices.pid.
# API_WORKERS=1 (default): one API process on API_PORT (8000). API_WORKERS=N>1: N single-worker
# API processes on 8001..800N (logs .stack/api-<i>.log) behind the nginx gateway on GATEWAY_PORT
# (8080, ops/gateway.sh), which balances and health-checks them; the demo then goes through it.
# REDIS_TOPOLOGY=cluster puts the engine, API and writers on the local Redis Cluster, e.g.
#   REDIS_TOPOLOGY=cluster API_WORKERS=2 ops/run.sh      (cluster + gateway + 2 workers)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
STACK="$ROOT/.stack"
API_PORT="${API_PORT:-8000}"

log() { printf '[run] %s\n' "$*" >&2; }
die() { printf '[run] ERROR: %s\n' "$*" >&2; exit 1; }

# pid from a pid file, only if that process is still alive
alive_pid() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# start NAME CMD...: run CMD in the background (own process group, so stop takes its children
# too), output to .stack/NAME.log, pid to .stack/NAME.pid.
start() {
    local name="$1"; shift
    local pid
    if pid="$(alive_pid "$STACK/$name.pid")"; then
        log "$name already running (pid $pid)"
        return 0
    fi
    log "starting $name: $*"
    setsid nohup "$@" </dev/null >>"$STACK/$name.log" 2>&1 &
    echo $! >"$STACK/$name.pid"
}

stop() {
    local name="$1" pid
    if pid="$(alive_pid "$STACK/$name.pid")"; then
        log "stopping $name (pid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "$name ignored SIGTERM for 15s; sending SIGKILL"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$STACK/$name.pid"
}

healthz() {
    "$ROOT/.venv/bin/python" - "$API_PORT" <<'PY' 2>/dev/null
import sys
import urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

case "${1:-start}" in
    stop)
        stop api
        for pidfile in "$STACK"/api-*.pid; do
            if [ -e "$pidfile" ]; then stop "$(basename "$pidfile" .pid)"; fi
        done
        bash "$ROOT/ops/gateway.sh" stop
        stop writers
        stop notices
        exit 0
        ;;
    start) ;;
    *) die "usage: ops/run.sh [stop]" ;;
esac

bash "$ROOT/ops/stack.sh" up
# shellcheck source=ops/env.sh
. "$ROOT/ops/env.sh"

# REDIS_TOPOLOGY=cluster: the engine, API and writers run on the local Redis Cluster (3 masters +
# 3 replicas on 7000-7005); rq's notice queue stays on the single Redis (rq cannot use a cluster).
if [ "${REDIS_TOPOLOGY:-single}" = cluster ]; then
    bash "$ROOT/ops/stack.sh" cluster-up
    export REDIS_CLUSTER=1 REDIS_WAIT_REPLICAS=1
    export REDIS_URL="redis://127.0.0.1:${CLUSTER_BASE_PORT:-7000}/0"
    export QUEUE_REDIS_URL="redis://127.0.0.1:${REDIS_PORT:-6379}/0"
    # Its own MongoDB database: the inventory documents' versions count the entries of the Redis
    # deployment's streams they mirror, and the single Redis's counts are not the cluster's.
    export MONGO_DB="${CLUSTER_MONGO_DB:-fulfillment_cluster}"
fi

API_WORKERS="${API_WORKERS:-1}"
API_NAME=api
if [ "$API_WORKERS" -gt 1 ]; then
    # One process per worker, so the gateway (not the server) balances them and sees each one fail.
    for ((i = 1; i <= API_WORKERS; i++)); do
        start "api-$i" "$ROOT/.venv/bin/python" -m api --port "$((API_PORT + i))"
    done
    API_BASE_PORT="$API_PORT" bash "$ROOT/ops/gateway.sh" start "$API_WORKERS"
    API_PORT="${GATEWAY_PORT:-8080}"
    API_NAME=api-1  # the start-up check below watches the first worker
else
    start api "$ROOT/.venv/bin/python" -m api --port "$API_PORT"
fi
export API_URL="http://127.0.0.1:$API_PORT"
start writers "$ROOT/.venv/bin/python" -m writers
# The rq worker that sends notices (SMTP_HOST/SMTP_PORT, SMS_URL: see README, Notifications).
start notices "$ROOT/.venv/bin/python" -m notify worker

log "waiting for http://127.0.0.1:$API_PORT/healthz"
deadline=$((SECONDS + 60))
until healthz; do
    if ! alive_pid "$STACK/$API_NAME.pid" >/dev/null; then
        tail -n 40 "$STACK/$API_NAME.log" >&2 || true
        die "the API exited (log above: .stack/$API_NAME.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 40 "$STACK/$API_NAME.log" >&2 || true
        die "the API did not answer /healthz within 60s"
    fi
    sleep 0.3
done
alive_pid "$STACK/writers.pid" >/dev/null || { tail -n 40 "$STACK/writers.log" >&2 || true; die "the writers exited (.stack/writers.log)"; }
log "API up on http://127.0.0.1:$API_PORT (log .stack/$API_NAME.log), writers running (log .stack/writers.log)"

if [ -f "$ROOT/ops/demo.py" ]; then
    "$ROOT/.venv/bin/python" -m ops.demo
else
    log "ops/demo.py does not exist yet: nothing to demo"
fi
log "API and writers keep running; stop them with: ops/run.sh stop"
