#!/usr/bin/env bash
# The project with every extra (agent, coordinator, dev tools).
set -euo pipefail
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
