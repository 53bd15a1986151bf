#!/usr/bin/env bash
# Builds the agent's Debian package: stealbalancer-agent_<version>_<arch>.deb.
#
#   bash packaging/deb/build.sh [OUTPUT_DIR]     # default: dist/
#
# The package holds a self-contained venv under /opt/stealbalancer-agent (the wheel with
# its `agent` extra, built against Debian's own python3, which the package depends on),
# the hardened unit, the example config under /etc/stealbalancer (a conffile) and a
# /usr/bin/stealbalancer-agent link. It enables and starts nothing: the operator edits
# the config, then `systemctl enable --now stealbalancer-agent`. No system user: the
# unit runs as root with its capabilities taken away (see the unit for why).
#
# Needs: dpkg-deb, python3-venv, and what pip needs to build libvirt-python
# (libvirt-dev, pkg-config, a C compiler): tests/setup/10-apt.sh installs them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
python=/usr/bin/python3                 # the interpreter the venv runs on, on the target
prefix=/opt/stealbalancer-agent
version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
arch=$(dpkg --print-architecture)       # grpcio and libvirt-python are compiled
# The venv's compiled modules fit one minor version of python3: depend on exactly it.
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
pynext=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
venv=$root$prefix

# The sources only (no caches, no build/ left in the work tree).
mkdir -p "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/agent" "$repo/coordinator" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +

"$python" -m venv "$venv"
"$venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$work/wheel" "$work/src"
wheel=$(ls "$work"/wheel/stealbalancer-*.whl)
"$venv/bin/pip" install -q --disable-pip-version-check --no-compile "${wheel}[agent]"
"$venv/bin/pip" uninstall -q -y pip setuptools wheel 2>/dev/null || true
# The wheel is the whole project; this package runs the agent only (the coordinator's
# extras are not installed, so its entry points would not even start).
rm -f "$venv/bin/coordctl" "$venv/bin/stealbalancer-coordinator" \
      "$venv"/bin/Activate.ps1 "$venv"/bin/activate.csh "$venv"/bin/activate.fish

# The venv was made in the staging root: point its scripts at the installed path and
# compile the bytecode with installed paths too (/opt is read-only for the service).
grep -rlI --null "$venv" "$venv/bin" | xargs -0 -r sed -i "s|$venv|$prefix|g"
"$python" -m compileall -q -j 0 -s "$root" -p / "$venv/lib" >/dev/null

install -d "$root/usr/bin"
ln -s "$prefix/bin/stealbalancer-agent" "$root/usr/bin/stealbalancer-agent"
install -d "$root/lib/systemd/system"
# The unit as shipped, minus its by-hand install notes, running the packaged venv.
grep -v '^#   ' "$repo/packaging/systemd/stealbalancer-agent.service" \
    | sed "s|^ExecStart=/usr/local/bin/stealbalancer-agent|ExecStart=$prefix/bin/stealbalancer-agent|" \
    > "$root/lib/systemd/system/stealbalancer-agent.service"
chmod 0644 "$root/lib/systemd/system/stealbalancer-agent.service"
install -d -m 0750 "$root/etc/stealbalancer" "$root/etc/stealbalancer/tls"
install -m 0640 "$repo/packaging/systemd/agent.yaml" "$root/etc/stealbalancer/agent.yaml"
install -d "$root/usr/share/doc/stealbalancer-agent"
install -m 0644 "$repo/packaging/deb/copyright" "$root/usr/share/doc/stealbalancer-agent/copyright"

install -d "$root/DEBIAN"
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$installed_kib|" \
    -e "s|@PYVER@|$pyver|" -e "s|@PYNEXT@|$pynext|" "$repo/packaging/deb/control.in" > "$root/DEBIAN/control"
echo /etc/stealbalancer/agent.yaml > "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$repo/packaging/deb/$script" "$root/DEBIAN/$script"
done

deb=$out/stealbalancer-agent_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >/dev/null
echo "$deb"
