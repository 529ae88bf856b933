#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine:
#   bash scripts/demo.sh [leadrefinery demo options…]
# sets up .venv (scripts/setup.sh), then generates a trial business, ingests it, scores it,
# prints the ranked leads and serves the dashboard (Ctrl-C stops it; --no-serve to skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LEADREFINERY_EXTRAS=${LEADREFINERY_EXTRAS:-postgres,spark,test,dev} bash scripts/setup.sh
exec .venv/bin/leadrefinery demo "$@"
