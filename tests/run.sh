#!/usr/bin/env bash
# The test command (README): on a fresh Debian 12 machine, as root, installs what the
# suite needs (apt + pip), starts the services the real-component tests use (libvirtd,
# the Nova fixture venv), runs the static checks, then pytest.
#
#   bash tests/run.sh                 # everything
#   bash tests/run.sh tests/unit -x   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

for step in tests/setup/[0-9]*.sh; do
    echo "== setup: $step"
    bash "$step"
done

echo "== checks"
python3 -m coordinator.api.generate --check
ruff check .
ruff format --check . || { echo "run: ruff format ."; exit 1; }
mypy
lint-imports

echo "== pytest"
set +e
python3 -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
