#!/usr/bin/env bash
# Services the test suite needs, on a fresh Debian machine or a warm one.
#
#   source scripts/test-services.sh      # start them; stopped when the sourcing shell exits
#   bash scripts/test-services.sh CMD…   # start them, run CMD with the environment, stop them
#
# What it does:
#   1. installs, only when missing, the Debian packages the tests use: postgresql (server
#      binaries), chromium (dashboard tests) and a Java runtime (Spark). One quiet,
#      non-interactive `apt-get update` first, and only if something is missing.
#   2. unless LEADREFINERY_PG_DSN is already set, starts a throwaway PostgreSQL cluster in a temp
#      dir (initdb + pg_ctl as a non-root user, loopback only, a free port, fsync off), creates
#      the database `leadrefinery` and exports LEADREFINERY_PG_DSN for the tests.
#   3. stops the cluster and removes its files on exit (trap).
#
# LEADREFINERY_SKIP_APT=1 skips step 1 (the tests that need a missing service then skip).
# Nothing here is meant for production: the cluster trusts every local connection.

_lr_log() { printf '[test-services] %s\n' "$*" >&2; }

_lr_as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else return 1
    fi
}

_lr_pg_bindir() {
    # the newest installed server version
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && printf '%s\n' "$d"
}

_lr_install_packages() {
    [[ ${LEADREFINERY_SKIP_APT:-} == 1 ]] && return 0
    local missing=()
    _lr_pg_bindir >/dev/null || missing+=(postgresql)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
    ((${#missing[@]} == 0)) && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        _lr_log "missing ${missing[*]} and no apt-get here: the tests that need them will skip"
        return 0
    fi
    _lr_log "installing ${missing[*]} (apt-get)…"
    local start=$SECONDS
    # policy-rc.d: the package must not start its own system cluster; we run our own.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]] && _lr_as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"; then
        created_policy=1
    fi
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/leadrefinery-apt.XXXXXX")
    if _lr_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >"$log" 2>&1 &&
        _lr_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            -o Dpkg::Use-Pty=0 "${missing[@]}" </dev/null >>"$log" 2>&1; then
        _lr_log "installed ${missing[*]} in $((SECONDS - start))s"
    else
        tail -n 20 "$log" >&2
        _lr_log "could not install ${missing[*]} (not root, or apt failed): the tests that need them will skip"
    fi
    rm -f "$log"
    ((created_policy)) && _lr_as_root rm -f "$policy"
    return 0
}

_lr_free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

LR_PG_DIR=""
LR_PG_BIN=""
LR_PG_USER=""

_lr_pg_run() {  # run a PostgreSQL binary as the cluster's owner
    if [[ -n $LR_PG_USER ]]; then
        (cd / && runuser -u "$LR_PG_USER" -- "$@")  # it may not enter the caller's directory
    else
        "$@"
    fi
}

lr_stop_services() {
    if [[ -n $LR_PG_DIR && -d $LR_PG_DIR ]]; then
        if [[ -f $LR_PG_DIR/data/postmaster.pid ]]; then
            _lr_pg_run "$LR_PG_BIN/pg_ctl" -D "$LR_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$LR_PG_DIR"
        _lr_log "stopped PostgreSQL"
    fi
    LR_PG_DIR=""
}

_lr_start_postgres() {
    if [[ -n ${LEADREFINERY_PG_DSN:-} ]]; then
        _lr_log "using the PostgreSQL server in LEADREFINERY_PG_DSN"
        return 0
    fi
    LR_PG_BIN=$(_lr_pg_bindir) || {
        _lr_log "no PostgreSQL server binaries: the postgres tests will skip"
        return 0
    }
    # initdb refuses to run as root: use the package's `postgres` user (or nobody).
    if [[ $(id -u) -eq 0 ]]; then
        if id postgres >/dev/null 2>&1; then LR_PG_USER=postgres; else LR_PG_USER=nobody; fi
    fi
    local start=$SECONDS port
    LR_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/leadrefinery-pg.XXXXXX")
    chmod 755 "$LR_PG_DIR"
    [[ -n $LR_PG_USER ]] && chown "$LR_PG_USER" "$LR_PG_DIR"
    if ! _lr_pg_run "$LR_PG_BIN/initdb" -D "$LR_PG_DIR/data" -U postgres -A trust -E UTF8 \
        --locale=C --no-sync >"$LR_PG_DIR/initdb.log" 2>&1; then
        _lr_log "initdb failed:"; cat "$LR_PG_DIR/initdb.log" >&2
        lr_stop_services; return 1
    fi
    local tries
    for tries in 1 2 3; do
        port=$(_lr_free_port)
        if _lr_pg_run "$LR_PG_BIN/pg_ctl" -D "$LR_PG_DIR/data" -l "$LR_PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $LR_PG_DIR -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
            start >/dev/null; then
            break
        fi
        if ((tries == 3)); then
            _lr_log "PostgreSQL did not start:"; tail -n 20 "$LR_PG_DIR/server.log" >&2
            lr_stop_services; return 1
        fi
    done
    _lr_pg_run "$LR_PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres leadrefinery || {
        lr_stop_services; return 1
    }
    export LEADREFINERY_PG_DSN="postgresql://postgres@127.0.0.1:$port/leadrefinery"
    _lr_log "PostgreSQL $("$LR_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($((SECONDS - start))s)"
}

lr_start_services() {
    _lr_install_packages
    _lr_start_postgres
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # executed: run the given command inside the services
    set -uo pipefail
    if (($# == 0)); then
        echo "usage: bash $0 CMD [ARGS…]   (or: source $0)" >&2
        exit 2
    fi
    trap lr_stop_services EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    lr_start_services || exit 1
    "$@"
    exit $?
else
    # sourced: start now, stop when the sourcing shell exits
    trap lr_stop_services EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    lr_start_services
fi
