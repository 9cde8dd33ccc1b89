#!/usr/bin/env bash
# Local stack for development and CI, without Docker: PostgreSQL, Redis and FerretDB
# (MongoDB wire protocol on PostgreSQL), all on 127.0.0.1, all data under .stack/.
#
#   ops/stack.sh install     OS packages (nginx too: the gateway; promtool: the alert tests; valgrind: the counted engine row), FerretDB binary, .venv, data dirs, configs
#   ops/stack.sh up          install + start all three + roles/databases/schema, wait until they answer
#   ops/stack.sh down        stop all three cleanly
#   ops/stack.sh status      one line per service; exit 0 only if all three answer
#   ops/stack.sh reset-test  truncate the tables of the fulfillment_test database
#   ops/stack.sh cluster-up      start a Redis Cluster (3 masters + 3 replicas, ports 7000-7005)
#   ops/stack.sh cluster-down    stop it (data kept under .stack/cluster)
#   ops/stack.sh cluster-status  one line per cluster node
#
# Every step checks before it acts, so a repeat `up` on a running stack takes a second or two.
# Ports: PG_PORT (5432), REDIS_PORT (6379), MONGO_PORT (27017), FERRETDB_DEBUG_ADDR (127.0.0.1:8088),
# CLUSTER_BASE_PORT (7000: the cluster uses 6 ports from there).
# Memory limits: REDIS_MAXMEMORY (4gb), CLUSTER_NODE_MAXMEMORY (2gb a node), see redis_config_text.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd -P)"
STACK="$ROOT/.stack"
VENV="$ROOT/.venv"

PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
MONGO_PORT="${MONGO_PORT:-27017}"
FERRETDB_DEBUG_ADDR="${FERRETDB_DEBUG_ADDR:-127.0.0.1:8088}"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="v1.24.2"
CLUSTER_BASE_PORT="${CLUSTER_BASE_PORT:-7000}"
CLUSTER_NODES=6                      # 3 masters, 1 replica each
CLUSTER_NODE_TIMEOUT_MS=2000
# Why these values: see the memory limit in redis_config_text.
REDIS_MAXMEMORY="${REDIS_MAXMEMORY:-4gb}"
CLUSTER_NODE_MAXMEMORY="${CLUSTER_NODE_MAXMEMORY:-2gb}"

PG_DIR="$STACK/pg"          # may become a symlink, see pg_prepare_dir
REDIS_DIR="$STACK/redis"
CLUSTER_DIR="$STACK/cluster"
FDB_DIR="$STACK/ferretdb"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

# Print the end of a log file, to make a failed start explain itself.
show_log() {
    if [ -s "$1" ]; then
        printf -- '----- last lines of %s -----\n' "$1" >&2
        tail -n 40 "$1" >&2
        printf -- '-----\n' >&2
    else
        log "(log $1 is empty or missing)"
    fi
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no extra tool).
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# For error messages: which process listens on port $1 (needs ss from iproute2; best effort).
who_listens() {
    have ss || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n 1
}

# wait_until NAME SECONDS LOGFILE CMD...: poll CMD (which must be quiet) every 0.2 s; on timeout
# print the log and fail.
wait_until() {
    local name="$1" secs="$2" logfile="$3"; shift 3
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log "$logfile"
            die "$name did not answer within ${secs}s"
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# OS packages
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    is_root || die "need root to install: $* (apt-get install $*)"
    have apt-get || die "apt-get not found; install $* by hand"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    # Debian's maintainer scripts would start a system-wide postgres/redis on 5432/6379, the
    # very ports we use; a policy-rc.d that says "no" (exit 101) stops that (Docker images
    # usually have one already).
    local policy=/usr/sbin/policy-rc.d added=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    mkdir -p "$STACK"
    log "apt-get install $* (output in .stack/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        >>"$STACK/apt.log" 2>&1 || rc=$?
    [ "$added" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || { show_log "$STACK/apt.log"; die "apt-get install $* failed"; }
}

PGBIN=""
find_pgbin() {
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_isready" ] && [ -x "$PGBIN/psql" ]
}

ensure_os_packages() {
    local pkgs=()
    find_pgbin || pkgs+=(postgresql postgresql-client)
    have redis-server || pkgs+=(redis-server)
    have redis-cli || pkgs+=(redis-tools)
    # The gateway (ops/gateway.sh, the package it names): installed here so that `make test`,
    # whose setup runs this, tests it on a fresh machine instead of skipping it.
    have nginx || [ -x /usr/sbin/nginx ] || pkgs+=(nginx)
    # promtool, for the same reason: `make test` runs the alert rules' unit tests
    # (ops/alerts.test.yml) and `make lint` checks the rules. Debian ships it in the prometheus
    # package, whose server the policy-rc.d in apt_install keeps from starting.
    have promtool || pkgs+=(prometheus)
    # valgrind, for the benchmark's counted engine row (loadtest/instructions.py) and its test.
    have vgdb || pkgs+=(valgrind)
    # runuser/flock (util-linux), sha256sum/timeout (coreutils) are in every Debian base image.
    if [ "${#pkgs[@]}" -gt 0 ]; then
        apt_install "${pkgs[@]}"
    fi
    find_pgbin || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
    is_root && ! id postgres >/dev/null 2>&1 && die "OS user 'postgres' is missing (it comes with the postgresql package)"
    return 0
}

# ---------------------------------------------------------------------------------------------
# FerretDB binary
# ---------------------------------------------------------------------------------------------
GO=""
find_go() {
    if have go; then GO="$(command -v go)"
    elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
    else return 1
    fi
}

ferretdb_bin() {
    if [ -n "${FERRETDB_BIN:-}" ]; then echo "$FERRETDB_BIN"; return; fi
    local gopath=""
    find_go && gopath="$("$GO" env GOPATH 2>/dev/null || true)"
    echo "${gopath:-$HOME/go}/bin/ferretdb"
}

ensure_ferretdb() {
    FDB_BIN="$(ferretdb_bin)"
    # A working binary prints "version: v1.24.2"; a plain `go install ...@v1.24.2` build does not
    # (it panics at start-up, see below), so it is rebuilt, as is another version.
    if [ -x "$FDB_BIN" ] && [[ "$("$FDB_BIN" --version 2>/dev/null || true)" == "version: $FERRETDB_VERSION"* ]]; then
        return 0
    fi
    find_go || die "Go is needed to build FerretDB (not found in PATH or /usr/local/go/bin)"
    # Why not just `go install $FERRETDB_MODULE/cmd/ferretdb@$FERRETDB_VERSION`: the module zip
    # lacks the generated build/version/version.txt, and such a binary panics at start-up with
    # "Invalid build/version/version.txt file content". So: fetch the same module through the Go
    # module proxy, write version.txt into a copy, and build that.
    log "building FerretDB $FERRETDB_VERSION into $FDB_BIN (first time only; takes a few minutes)"
    local src tmp
    src="$("$GO" mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -n "$src" ] && [ -d "$src" ] || die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION failed"
    tmp="$(mktemp -d)"
    cp -r "$src/." "$tmp/src"
    chmod -R u+w "$tmp/src"     # the module cache is read-only
    echo "$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"
    mkdir -p "$(dirname "$FDB_BIN")"
    if ! (cd "$tmp/src" && "$GO" build -buildvcs=false -trimpath -o "$FDB_BIN.new" ./cmd/ferretdb); then
        rm -rf "$tmp"
        die "building FerretDB failed"
    fi
    rm -rf "$tmp"
    mv -f "$FDB_BIN.new" "$FDB_BIN"
    [[ "$("$FDB_BIN" --version 2>/dev/null || true)" == "version: $FERRETDB_VERSION"* ]] \
        || die "built FerretDB does not report $FERRETDB_VERSION"
}

# ---------------------------------------------------------------------------------------------
# Python virtualenv (.venv): reinstalled only when pyproject.toml or ops/constraints.txt changes
# ---------------------------------------------------------------------------------------------
pick_python() {
    local c
    for c in python3.11 python3.12 python3.13 python3; do
        if have "$c" && "$c" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    return 1
}

ensure_venv() {
    local want stamp="$VENV/.requirements.sha256"
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/ops/constraints.txt" | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        py="$(pick_python)" || die "no Python 3.11-3.13 found"
        log "creating .venv with $py"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            # Debian's own python3 ships venv/ensurepip separately.
            rm -rf "$VENV"
            apt_install python3-venv
            "$py" -m venv "$VENV" || die "python -m venv failed"
        fi
    fi
    log "pip install -e '.[dev]' at ops/constraints.txt (it or pyproject.toml changed, or first install)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c ops/constraints.txt -e '.[dev]') || die "pip install -e '.[dev]' failed"
    echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: own cluster in .stack/pg, run as OS user postgres (postgres refuses to run as root)
# ---------------------------------------------------------------------------------------------
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")   # cd /: postgres may not be allowed into $PWD
    else
        "$@"
    fi
}

pg_prepare_dir() {
    # A link whose target is gone (e.g. /var/lib wiped): start over with a fresh cluster.
    if [ -L "$PG_DIR" ] && [ ! -e "$PG_DIR" ]; then
        log "$PG_DIR pointed to $(readlink "$PG_DIR"), which is gone; creating a new cluster"
        rm -f "$PG_DIR"
    fi
    if [ ! -e "$PG_DIR" ]; then
        mkdir -p "$PG_DIR"
        chmod 700 "$PG_DIR"
        if is_root; then
            chown postgres:postgres "$PG_DIR"
            if ! as_pg test -w "$PG_DIR"; then
                # A parent directory is closed to the postgres user (a clone under /root, mode
                # 700, say). Keep the cluster where postgres can reach it and link it into .stack.
                rmdir "$PG_DIR"
                local alt
                alt="/var/lib/fulfillment-stack/$(printf %s "$ROOT" | sha256sum | cut -c1-12)/pg"
                mkdir -p "$alt"
                chmod 755 "$(dirname "$alt")" "$(dirname "$(dirname "$alt")")"
                chown postgres:postgres "$alt"
                chmod 700 "$alt"
                ln -s "$alt" "$PG_DIR"
                log "postgres cannot reach $ROOT; cluster lives in $alt (linked as .stack/pg)"
            fi
        fi
    fi
    # Always address the cluster by its real path: postgres may not traverse the symlink's parent.
    PG_REAL="$(readlink -f "$PG_DIR")"
    PG_DATA="$PG_REAL/data"
    PG_LOG="$PG_REAL/postgres.log"
    PG_SOCK="$PG_REAL/run"
    # Unix socket paths are limited to 107 bytes; fall back to /tmp for a very deep checkout.
    if [ "${#PG_SOCK}" -gt 90 ]; then
        PG_SOCK="/tmp/fulfillment-pg-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
    fi
    if [ ! -d "$PG_SOCK" ]; then
        mkdir -p "$PG_SOCK"
        chmod 700 "$PG_SOCK"
        is_root && chown postgres:postgres "$PG_SOCK"
    fi
    return 0
}

pg_config_text() {
    cat <<EOF
# Written by ops/stack.sh on every install/up: change the script, not this file.
# Included at the end of postgresql.conf, so these settings win.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200

# Light tuning for a dev box / 2-core CI machine.
shared_buffers = 256MB
effective_cache_size = 1GB
work_mem = 8MB
maintenance_work_mem = 128MB
max_wal_size = 2GB                  # fewer forced checkpoints during load tests
checkpoint_completion_target = 0.9

# Orders are the system of record: keep full durability even locally, so that what the
# benchmarks measure is what production would pay.
fsync = on
synchronous_commit = on
full_page_writes = on

timezone = 'UTC'
log_timezone = 'UTC'
EOF
}

pg_install() {
    pg_prepare_dir
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        log "initdb $PG_DATA"
        # Local (socket) connections trust: the socket dir is 0700, so only postgres/root get in.
        # TCP connections need a password (scram-sha-256).
        if ! as_pg "$PGBIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
                --auth-local=trust --auth-host=scram-sha-256 >"$PG_REAL/initdb.log" 2>&1; then
            show_log "$PG_REAL/initdb.log"
            die "initdb failed"
        fi
        echo "include_if_exists = 'fulfillment.conf'" >>"$PG_DATA/postgresql.conf"
    fi
    local conf="$PG_DATA/fulfillment.conf" new
    new="$(pg_config_text)"
    if [ "$(cat "$conf" 2>/dev/null)" != "$new" ]; then
        printf '%s\n' "$new" >"$conf"
        is_root && chown postgres:postgres "$conf"
        pg_running && log "note: $conf changed; run 'ops/stack.sh down && ops/stack.sh up' to apply it"
    fi
    return 0
}

pg_running() { as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }
pg_ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
# client_min_messages=warning hides the "already exists, skipping" notices of the idempotent DDL.
psql_super() { PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"; }
psql_app() { PGOPTIONS='-c client_min_messages=warning' PGPASSWORD=fulfillment "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U fulfillment "$@"; }

pg_up() {
    if pg_running; then
        # postmaster.pid line 4 is the port it listens on; PG_PORT may have changed since.
        local running_port
        running_port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
        [ "$running_port" = "$PG_PORT" ] || die "our PostgreSQL is running on port $running_port, not $PG_PORT: run 'ops/stack.sh down' first"
    else
        if port_open "$PG_PORT"; then
            die "something else already listens on 127.0.0.1:$PG_PORT [$(who_listens "$PG_PORT")] (a system PostgreSQL?). Stop it
       (e.g. 'pg_ctlcluster <version> main stop'; see pg_lsclusters) or use another port: PG_PORT=5433 ops/stack.sh up"
        fi
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        if ! as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null; then
            show_log "$PG_LOG"
            die "PostgreSQL did not start"
        fi
    fi
    wait_until "PostgreSQL" 30 "$PG_LOG" pg_ready

    # Role and databases (FerretDB keeps its data in the `ferretdb` database).
    psql_super -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fulfillment') THEN
        CREATE ROLE fulfillment LOGIN SUPERUSER PASSWORD 'fulfillment';
    END IF;
END
$$;
SELECT format('CREATE DATABASE %I OWNER fulfillment', d)
FROM unnest(ARRAY['fulfillment', 'fulfillment_test', 'ferretdb']) AS d
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)
\gexec
SQL
    # Schema through TCP + password, i.e. exactly the way the app connects.
    local db
    for db in fulfillment fulfillment_test; do
        psql_app -d "$db" -f "$ROOT/ops/schema.sql" || die "applying ops/schema.sql to $db failed"
    done
    # FerretDB's lookups by _id need an index its own does not give (see the file).
    psql_app -d ferretdb -f "$ROOT/ops/ferretdb_id_index.sql" \
        || die "applying ops/ferretdb_id_index.sql to ferretdb failed"
}

pg_down() {
    if pg_running; then
        log "stopping PostgreSQL"
        as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
redis_config_text() {
    cat <<EOF
# Written by ops/stack.sh on every install/up: change the script, not this file.
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_DIR/redis.log
loglevel notice
dir $REDIS_DIR

# Persistence. Redis is where every order is placed, so an accepted order must survive a
# restart: the append-only file is on.
appendonly yes
# Why everysec: Redis write()s each command to the AOF before it replies, and a background
# thread fsyncs the file once a second. So:
#  - Redis process crash / kill / restart: nothing acknowledged is lost, the write already
#    reached the kernel (only when the disk stalls an fsync for over a second may Redis hold
#    up to ~2 s of writes in its own memory before writing them).
#  - OS crash or power loss: at most ~1 s of acknowledged writes is lost.
# 'appendfsync always' (fsync before every reply) is the choice for zero loss even on power
# loss, at a large throughput cost; 'no' leaves flushing to the OS (~30 s at risk).
appendfsync everysec
# AOF rewrites start with an RDB image: fast restarts, AOF-level durability.
aof-use-rdb-preamble yes
# RDB snapshots stay on too (no 'save ""' here, so Redis's default save points apply):
# a second, compact copy for backups.

# Memory limit. Never evict keys to make room: stock, holds, orders and idempotency keys must not
# silently disappear. At the limit Redis refuses every write (a script that may write is refused
# before it runs, so nothing is half-written: the API answers 503 store_full) and keeps serving
# reads, instead of growing until the kernel's OOM killer or swap takes it.
# Why $REDIS_MAXMEMORY (REDIS_MAXMEMORY, default 4gb) on this 24 GiB machine: an AOF rewrite or
# RDB save forks, and under writes copy-on-write can approach the dataset's size again, so a
# Redis needs up to twice its limit; the machine also runs the local cluster (6 nodes x
# CLUSTER_NODE_MAXMEMORY 2gb = 12 GB at most, replicas included), PostgreSQL, FerretDB, the API
# and the writers. 4gb holds ~12M hot orders (~350 B each: record + stream entry; ~600 B with an
# idempotency key), i.e. 20 min at 10k orders/s.
maxmemory $REDIS_MAXMEMORY
maxmemory-policy noeviction
EOF
}

redis_install() {
    mkdir -p "$REDIS_DIR"
    local conf="$REDIS_DIR/redis.conf" new
    new="$(redis_config_text)"
    if [ "$(cat "$conf" 2>/dev/null)" != "$new" ]; then
        printf '%s\n' "$new" >"$conf"
        redis_ours && log "note: $conf changed; up applies a missing memory limit at once, the rest takes 'ops/stack.sh down && ops/stack.sh up'"
    fi
    return 0
}

redis_cli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_ping() { [ "$(redis_cli ping 2>/dev/null)" = "PONG" ]; }
# Ours = the Redis on the port works in our data dir (not a system redis-server).
redis_ours() { [ "$(redis_cli config get dir 2>/dev/null | sed -n 2p)" = "$REDIS_DIR" ]; }

# A memory size as Redis reads it (1k = 1000, 1kb = 1024, ... gb), in bytes.
mem_bytes() {
    local v="${1,,}" n unit
    n="${v%%[a-z]*}"
    unit="${v#"$n"}"
    case "$unit" in
        "" | b) echo "$n" ;;
        k) echo $((n * 1000)) ;;
        kb) echo $((n * 1024)) ;;
        m) echo $((n * 1000000)) ;;
        mb) echo $((n * 1024 * 1024)) ;;
        g) echo $((n * 1000000000)) ;;
        gb) echo $((n * 1024 * 1024 * 1024)) ;;
        *) die "cannot read the memory size '$1'" ;;
    esac
}

# ensure_memory_limit PORT LIMIT: a running Redis whose config had no limit yet (it started before
# the limit was written) gets it now by CONFIG SET; its config file has it for the next start. One
# with another non-zero limit is left alone and named: someone set it by hand, or a test holds a
# limit for a moment (tests/test_store_full.py).
ensure_memory_limit() {
    local port="$1" limit="$2" current
    current="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" config get maxmemory | sed -n 2p)"
    if [ "$current" = 0 ]; then
        log "127.0.0.1:$port had no memory limit: CONFIG SET maxmemory $limit"
        [ "$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" config set maxmemory "$limit")" = OK ] \
            || die "CONFIG SET maxmemory $limit on 127.0.0.1:$port failed"
    elif [ "$current" != "$(mem_bytes "$limit")" ]; then
        log "note: 127.0.0.1:$port runs with maxmemory $current, its config says $limit (restart it, or CONFIG SET maxmemory $limit)"
    fi
    if [ "$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" config get maxmemory-policy | sed -n 2p)" != noeviction ]; then
        log "127.0.0.1:$port: CONFIG SET maxmemory-policy noeviction"
        timeout 10 redis-cli -h 127.0.0.1 -p "$port" config set maxmemory-policy noeviction >/dev/null
    fi
}

redis_up() {
    if redis_ping || port_open "$REDIS_PORT"; then
        redis_ours || die "something else already listens on 127.0.0.1:$REDIS_PORT [$(who_listens "$REDIS_PORT")] (a system redis-server?).
       Stop it (e.g. 'redis-cli -p $REDIS_PORT shutdown') or use another port: REDIS_PORT=6380"
    else
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        (cd "$REDIS_DIR" && redis-server "$REDIS_DIR/redis.conf") >/dev/null || { show_log "$REDIS_DIR/redis.log"; die "redis-server failed to start"; }
    fi
    wait_until "Redis" 30 "$REDIS_DIR/redis.log" redis_ping
    ensure_memory_limit "$REDIS_PORT" "$REDIS_MAXMEMORY"
}

redis_down() {
    if redis_ours; then
        log "stopping Redis (SHUTDOWN: final fsync of the AOF and an RDB save)"
        redis_cli shutdown >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 30))
        while redis_ping; do
            [ "$SECONDS" -ge "$deadline" ] && die "Redis did not stop within 30s"
            sleep 0.2
        done
    fi
}

# ---------------------------------------------------------------------------------------------
# Redis Cluster: 3 masters + 3 replicas on 127.0.0.1:CLUSTER_BASE_PORT.. (7000-7005), data under
# .stack/cluster/<port>. Separate from the single Redis above; `make test-cluster` runs on it.
# ---------------------------------------------------------------------------------------------
cluster_ports() { local i; for ((i = 0; i < CLUSTER_NODES; i++)); do echo $((CLUSTER_BASE_PORT + i)); done; }

cluster_node_config_text() {
    local port="$1" dir="$CLUSTER_DIR/$1"
    cat <<CONF
# Written by ops/stack.sh cluster-up: change the script, not this file.
bind 127.0.0.1
protected-mode yes
port $port
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
cluster-enabled yes
cluster-config-file nodes.conf
# A master that does not answer for 2 s is marked failed and its replica takes over (~2-4 s in all).
cluster-node-timeout $CLUSTER_NODE_TIMEOUT_MS
# A shard without a master refuses its own slots only: the other shards keep taking orders.
cluster-require-full-coverage no
# Same durability as the single Redis (see redis_config_text): AOF, fsync once a second.
appendonly yes
appendfsync everysec
aof-use-rdb-preamble yes
# Same memory rule too, per node: 6 x $CLUSTER_NODE_MAXMEMORY (CLUSTER_NODE_MAXMEMORY) must fit
# beside the single Redis with fork headroom (see redis_config_text). Replicas carry it as well:
# a replica does not refuse its master's writes, but once promoted it must have the limit.
maxmemory $CLUSTER_NODE_MAXMEMORY
maxmemory-policy noeviction
CONF
}

cluster_cli() { local port="$1"; shift; timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"; }
cluster_node_ping() { [ "$(cluster_cli "$1" ping 2>/dev/null)" = "PONG" ]; }
cluster_node_ours() { [ "$(cluster_cli "$1" config get dir 2>/dev/null | sed -n 2p)" = "$CLUSTER_DIR/$1" ]; }
cluster_info() { cluster_cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }
cluster_all_ping() { local p; for p in $(cluster_ports); do cluster_node_ping "$p" || return 1; done; }

# Every node sees a healthy cluster of CLUSTER_NODES nodes with all slots served, and every
# replica is in sync with its master (a failover right after start-up then has a replica to promote).
cluster_healthy() {
    local p
    for p in $(cluster_ports); do
        [ "$(cluster_info "$p" cluster_state)" = ok ] || return 1
        [ "$(cluster_info "$p" cluster_known_nodes)" = "$CLUSTER_NODES" ] || return 1
        [ "$(cluster_info "$p" cluster_slots_ok)" = 16384 ] || return 1
        if cluster_cli "$p" info replication | tr -d '\r' | grep -q '^role:slave'; then
            cluster_cli "$p" info replication | tr -d '\r' | grep -q '^master_link_status:up' || return 1
        fi
    done
}

cmd_cluster_up() {
    local t0=$SECONDS p
    ensure_os_packages
    for p in $(cluster_ports); do
        local dir="$CLUSTER_DIR/$p" new
        mkdir -p "$dir"
        new="$(cluster_node_config_text "$p")"
        [ "$(cat "$dir/redis.conf" 2>/dev/null)" = "$new" ] || printf '%s\n' "$new" >"$dir/redis.conf"
        if cluster_node_ping "$p" || port_open "$p"; then
            cluster_node_ours "$p" || die "something else listens on 127.0.0.1:$p [$(who_listens "$p")]; stop it or set CLUSTER_BASE_PORT"
        else
            log "starting cluster node 127.0.0.1:$p"
            (cd "$dir" && redis-server "$dir/redis.conf") >/dev/null || { show_log "$dir/redis.log"; die "redis-server :$p failed to start"; }
        fi
    done
    wait_until "Redis cluster nodes" 30 "$CLUSTER_DIR/$CLUSTER_BASE_PORT/redis.log" cluster_all_ping
    for p in $(cluster_ports); do ensure_memory_limit "$p" "$CLUSTER_NODE_MAXMEMORY"; done
    # Nodes that restarted with their nodes.conf find each other again; only brand-new nodes (one
    # known node, no slots) are joined into a cluster here.
    if [ "$(cluster_info "$CLUSTER_BASE_PORT" cluster_known_nodes)" = 1 ] \
        && [ "$(cluster_info "$CLUSTER_BASE_PORT" cluster_slots_assigned)" = 0 ]; then
        local addrs=()
        for p in $(cluster_ports); do addrs+=("127.0.0.1:$p"); done
        log "creating the cluster: ${addrs[*]} (3 masters, 1 replica each)"
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
            >"$CLUSTER_DIR/create.log" 2>&1 || { show_log "$CLUSTER_DIR/create.log"; die "redis-cli --cluster create failed"; }
    fi
    wait_until "Redis cluster (state ok, replicas in sync)" 60 "$CLUSTER_DIR/$CLUSTER_BASE_PORT/redis.log" cluster_healthy
    log "cluster up in $((SECONDS - t0))s: 127.0.0.1:$CLUSTER_BASE_PORT-$((CLUSTER_BASE_PORT + CLUSTER_NODES - 1))"
}

cmd_cluster_down() {
    have redis-cli || return 0
    local p
    for p in $(cluster_ports); do
        if cluster_node_ours "$p"; then
            log "stopping cluster node 127.0.0.1:$p"
            cluster_cli "$p" shutdown >/dev/null 2>&1 || true
        fi
    done
    log "cluster down (data kept in $CLUSTER_DIR; delete it for a brand-new cluster)"
}

cmd_cluster_status() {
    local p role ok=0
    for p in $(cluster_ports); do
        if cluster_node_ping "$p"; then
            role="$(cluster_cli "$p" info replication | tr -d '\r' | sed -n 's/^role://p')"
            printf '%-9s up    127.0.0.1:%-6s %-7s cluster_state=%s\n' "node" "$p" "$role" "$(cluster_info "$p" cluster_state)"
        else
            printf '%-9s DOWN  127.0.0.1:%s\n' node "$p"; ok=1
        fi
    done
    return "$ok"
}

# ---------------------------------------------------------------------------------------------
# FerretDB (MongoDB wire protocol, data in the `ferretdb` PostgreSQL database)
# ---------------------------------------------------------------------------------------------
fdb_pid() {
    local pid
    pid="$(cat "$FDB_DIR/ferretdb.pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa ferretdb "/proc/$pid/cmdline" 2>/dev/null \
        && echo "$pid"
}

# MongoDB-level ping with pymongo from .venv. Every timeout is bounded (socketTimeoutMS too: a
# wedged FerretDB accepts connections but may never reply), and `timeout` caps the whole thing.
mongo_ping() {
    [ -x "$VENV/bin/python" ] || return 1
    timeout 10 "$VENV/bin/python" - "$MONGO_PORT" 2>/dev/null <<'PY'
import sys
import pymongo
client = pymongo.MongoClient(
    f"mongodb://127.0.0.1:{sys.argv[1]}/",
    serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, socketTimeoutMS=3000,
)
client.admin.command("ping")
PY
}

# $1: the pid just started. Alive, not fdb_pid: right after the fork the child may not have
# exec'd FerretDB yet, and its command line is still this script's. Once the port is open it has,
# and fdb_pid must agree.
fdb_alive_and_listening() {
    kill -0 "$1" 2>/dev/null || { show_log "$FDB_DIR/ferretdb.log"; die "FerretDB exited during start-up"; }
    port_open "$MONGO_PORT" && fdb_pid >/dev/null
}

fdb_start() {
    port_open "$MONGO_PORT" && die "something else already listens on 127.0.0.1:$MONGO_PORT [$(who_listens "$MONGO_PORT")] (a mongod?).
       Stop it or use another port: MONGO_PORT=27018"
    log "starting FerretDB on 127.0.0.1:$MONGO_PORT"
    # nohup + all fds redirected: it outlives this script and does not hold a caller's pipe.
    nohup "$FDB_BIN" \
        --handler=postgresql \
        --postgresql-url="postgres://fulfillment:fulfillment@127.0.0.1:$PG_PORT/ferretdb" \
        --listen-addr="127.0.0.1:$MONGO_PORT" \
        --debug-addr="$FERRETDB_DEBUG_ADDR" \
        --telemetry=disable \
        --state-dir="$FDB_DIR" \
        --log-level=warn \
        </dev/null >>"$FDB_DIR/ferretdb.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$FDB_DIR/ferretdb.pid"
    wait_until "FerretDB (TCP)" 30 "$FDB_DIR/ferretdb.log" fdb_alive_and_listening "$pid"
    wait_until "FerretDB (MongoDB ping)" 30 "$FDB_DIR/ferretdb.log" mongo_ping
}

fdb_up() {
    mkdir -p "$FDB_DIR"
    local pid
    if pid="$(fdb_pid)"; then
        # Already running: it must also answer. FerretDB keeps no state of its own (all is in
        # PostgreSQL), so one that is wedged (seen: its 50-connection PostgreSQL pool exhausted
        # by open cursors, after which even ping blocks) is simply restarted.
        local deadline=$((SECONDS + 15))
        until mongo_ping; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "FerretDB (pid $pid) runs but has not answered a ping for 15s; restarting it"
                fdb_down
                fdb_start
                return
            fi
            sleep 0.5
        done
    else
        fdb_start
    fi
}

fdb_down() {
    local pid
    if pid="$(fdb_pid)"; then
        log "stopping FerretDB (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "FerretDB ignored SIGTERM for 15s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$FDB_DIR/ferretdb.pid"
}

# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------
cmd_install() {
    ensure_os_packages
    ensure_ferretdb
    ensure_venv
    pg_install
    redis_install
    mkdir -p "$FDB_DIR"
}

cmd_up() {
    local t0=$SECONDS
    cmd_install
    pg_up
    redis_up
    fdb_up
    log "up in $((SECONDS - t0))s: postgres 127.0.0.1:$PG_PORT, redis 127.0.0.1:$REDIS_PORT, ferretdb 127.0.0.1:$MONGO_PORT"
}

cmd_down() {
    find_pgbin || true
    fdb_down                      # first: it is a client of PostgreSQL
    have redis-cli && redis_down
    if [ -n "$PGBIN" ] && [ -e "$PG_DIR" ]; then
        pg_prepare_dir
        pg_down
    fi
    log "down"
}

cmd_status() {
    local ok=0 pid
    find_pgbin || true
    if [ -n "$PGBIN" ] && [ -e "$PG_DIR" ] && pg_prepare_dir && pg_ready; then
        pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || echo '?')"
        printf '%-9s up    127.0.0.1:%-6s pid %-8s data %s\n' postgres "$PG_PORT" "$pid" "$PG_DATA"
    else
        printf '%-9s DOWN  127.0.0.1:%s\n' postgres "$PG_PORT"; ok=1
    fi
    if have redis-cli && redis_ping; then
        local aof fsync maxmem who=ours
        aof="$(redis_cli config get appendonly | sed -n 2p)"
        fsync="$(redis_cli config get appendfsync | sed -n 2p)"
        maxmem="$(redis_cli config get maxmemory | sed -n 2p)"
        pid="$(redis_cli info server | tr -d '\r' | sed -n 's/^process_id://p')"
        redis_ours || { who="NOT OURS (dir is not $REDIS_DIR)"; ok=1; }
        printf '%-9s up    127.0.0.1:%-6s pid %-8s appendonly=%s appendfsync=%s maxmemory=%s %s\n' \
            redis "$REDIS_PORT" "$pid" "$aof" "$fsync" "$maxmem" "$who"
    else
        printf '%-9s DOWN  127.0.0.1:%s\n' redis "$REDIS_PORT"; ok=1
    fi
    if pid="$(fdb_pid)"; then
        if mongo_ping; then
            printf '%-9s up    127.0.0.1:%-6s pid %-8s backend postgres db ferretdb\n' ferretdb "$MONGO_PORT" "$pid"
        else
            printf '%-9s STUCK 127.0.0.1:%-6s pid %-8s runs but does not answer a ping (ops/stack.sh up restarts it)\n' \
                ferretdb "$MONGO_PORT" "$pid"
            ok=1
        fi
    else
        printf '%-9s DOWN  127.0.0.1:%s\n' ferretdb "$MONGO_PORT"; ok=1
    fi
    return "$ok"
}

cmd_reset_test() {
    find_pgbin || die "PostgreSQL is not installed; run ops/stack.sh up"
    pg_prepare_dir
    pg_ready || die "PostgreSQL is not running; run ops/stack.sh up"
    psql_app -d fulfillment_test -c 'TRUNCATE orders, order_status_history, order_lines, shipments, shipment_items'
    log "fulfillment_test: orders and order_status_history truncated"
}

usage() {
    sed -n '2,17p' "$SELF" | sed 's/^# \{0,1\}//'
    exit 2
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install|up|down|reset-test|cluster-up|cluster-down)
            # One stack operation at a time (make test in two shells, say). `flock -o` keeps the
            # lock out of the servers we start, so it is released when this script ends.
            if [ -z "${_STACK_LOCKED:-}" ] && have flock; then
                mkdir -p "$STACK"
                export _STACK_LOCKED=1
                exec flock -o "$STACK/.lock" bash "$SELF" "$@"
            fi
            ;;
    esac
    case "$cmd" in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        reset-test) cmd_reset_test ;;
        cluster-up) cmd_cluster_up ;;
        cluster-down) cmd_cluster_down ;;
        cluster-status) cmd_cluster_status ;;
        *) usage ;;
    esac
}

main "$@"
