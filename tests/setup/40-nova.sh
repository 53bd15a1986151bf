#!/usr/bin/env bash
# The real Nova (API + conductor + scheduler + placement + fake-driver computes, one
# process) used by the `nova` tests, in its own virtualenv: Nova pins libraries that
# clash with ours. Idempotent: a marker records what was installed.
set -euo pipefail
venv="${STEALBALANCER_NOVA_VENV:-/opt/stealbalancer/nova-venv}"
reqs=(nova==34.0.0 openstack-placement==16.0.0 'SQLAlchemy<2.1' testtools oslotest
      wsgi-intercept fixtures)
marker="$venv/.stealbalancer-installed"
want="$(printf '%s\n' "${reqs[@]}")"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    exit 0
fi
python_bin=/usr/bin/python3
[ -x "$python_bin" ] || python_bin="$(command -v python3)"
"$python_bin" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${reqs[@]}"
printf '%s\n' "${reqs[@]}" >"$marker"
