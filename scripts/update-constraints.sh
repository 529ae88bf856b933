#!/usr/bin/env bash
# Re-pin constraints.txt from the project's .venv (run after changing dependencies and testing).
# Every installed distribution is pinned (pip too, so a fresh venv upgrades to the same pip),
# except the project itself. scripts/setup.sh installs with `-c constraints.txt`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
{
    echo "# Pinned from a working .venv by scripts/update-constraints.sh; used by scripts/setup.sh."
    echo "# Regenerate after changing dependencies in pyproject.toml. Python $(.venv/bin/python -c 'import platform; print(platform.python_version())')."
    .venv/bin/python -m pip freeze --all --exclude-editable --disable-pip-version-check |
        grep -v -i -E '^(leadrefinery)([=@ ]|$)' | LC_ALL=C sort -f
} >constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins"
