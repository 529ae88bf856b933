#!/usr/bin/env bash
# Set up a development / CI machine from the package registries only; safe to run again.
#
#   bash scripts/setup.sh
#
# 1. creates .venv with `python3 -m venv` if it is missing (Python >= 3.11; PYTHON=… to choose)
# 2. installs the project editable with its extras, pinned by constraints.txt:
#      pip install -c constraints.txt -e '.[postgres,spark,test,dev]'
# 3. records what it installed in .venv/.leadrefinery-setup; a later run with the same
#    pyproject.toml, constraints.txt, extras and Python returns at once.
#
# System packages (PostgreSQL, Chromium, Java for Spark) are installed by
# scripts/test-services.sh, which the tests need and the demo does not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
EXTRAS=${LEADREFINERY_EXTRAS:-postgres,spark,test,dev}
STAMP=$VENV/.leadrefinery-setup
log() { printf '[setup] %s\n' "$*" >&2; }

fingerprint() {
    # what the installed environment depends on
    {
        cat pyproject.toml constraints.txt
        echo "extras=$EXTRAS"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -c1-32
}

if [[ -x $VENV/bin/python && -f $STAMP && $(cat "$STAMP") == "$(fingerprint)" ]] &&
    "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("leadrefinery") is None)'; then
    log "up to date ($VENV)"
    exit 0
fi

start=$SECONDS
if [[ ! -x $VENV/bin/python ]]; then
    command -v "$PYTHON" >/dev/null || { log "no $PYTHON on PATH: install Python 3.11+"; exit 1; }
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        log "$PYTHON is $("$PYTHON" --version 2>&1); Lead Refinery needs Python 3.11 or newer"
        exit 1
    }
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 needs python3-venv for ensurepip
        rm -rf "$VENV"
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing python3-venv (apt-get)…"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null >/dev/null
        fi
        "$PYTHON" -m venv "$VENV"
    fi
    log "created $VENV ($("$VENV/bin/python" --version))"
fi

# no wheel cache: CI installs once on a fresh machine, and the cache (~0.4 GB) is what ran one
# CI machine out of disk
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir)
# the pinned pip first (a new venv has the one bundled with Python), then the project
"${PIP[@]}" install -q -c constraints.txt pip
"${PIP[@]}" install -q -c constraints.txt -e ".[$EXTRAS]"
if ! "${PIP[@]}" check >/dev/null 2>&1; then
    log "warning: pip check reports conflicts:"
    "${PIP[@]}" check >&2 || true
fi
fingerprint >"$STAMP"
log "installed .[$EXTRAS] in $((SECONDS - start))s"
