#!/usr/bin/env bash
# Run the test suite as CI does:  bash scripts/test.sh [PYTEST ARGS…]   (default: tests/)
#
# 1. scripts/setup.sh            the virtualenv with every extra (fast when already done)
# 2. scripts/test-services.sh    Debian packages if missing; a throwaway PostgreSQL
#                                (LEADREFINERY_PG_DSN), stopped when this script exits
# 3. pytest -p no:cacheprovider  with LEADREFINERY_SPARK=1 when CI=true (Spark tests are slow)
#
# The exit code is pytest's, except that "no tests collected" (5) counts as success only when
# there is no test file at all under the paths given; otherwise it is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

t0=$SECONDS
bash scripts/setup.sh
t1=$SECONDS
# shellcheck source=scripts/test-services.sh
source scripts/test-services.sh
t2=$SECONDS

if [[ ${CI:-} == true ]]; then
    export LEADREFINERY_SPARK=${LEADREFINERY_SPARK:-1}
fi

args=("$@")
((${#args[@]})) || args=(tests)

set +e
.venv/bin/python -m pytest -p no:cacheprovider "${args[@]}"
rc=$?
set -e
printf '[test] setup %ss, services %ss, pytest %ss\n' $((t1 - t0)) $((t2 - t1)) $((SECONDS - t2)) >&2

if ((rc == 5)); then
    # which of the arguments name test locations (the rest are options and their values)
    paths=()
    for a in "${args[@]}"; do
        p=${a%%::*}
        [[ $a != -* && -e $p ]] && paths+=("$p")
    done
    ((${#paths[@]})) || paths=(tests)
    files=$(find "${paths[@]}" \( -name 'test_*.py' -o -name '*_test.py' \) -type f 2>/dev/null | wc -l)
    if ((files == 0)); then
        echo "[test] no test files under ${paths[*]}: nothing to run" >&2
        exit 0
    fi
    echo "[test] pytest collected no tests although $files test file(s) exist under ${paths[*]}:" \
        "check the -k / -m selection and the collection" >&2
fi
exit $rc
