#!/usr/bin/env bash
# MariaDB and PostgreSQL from Debian for the shared-journal tests (tests/journal), each
# its own instance on loopback only, on fixed ports so tests find them without being
# told: MariaDB on 127.0.0.1:13306, PostgreSQL on 127.0.0.1:15432. There is no systemd
# as PID 1 here, so the daemons are started by hand. Idempotent: packages, data
# directories, databases and users are created once; a running server is left alone.
# The test user's password is a fixed loopback-only test value (tests/journal/servers.py
# knows it); nothing is exported.
set -euo pipefail
root="${STEALBALANCER_DB_ROOT:-/var/lib/stealbalancer-test-db}"
password="stealbalancer-test"
my_port=13306
pg_port=15432
pg_version=15

packages=(mariadb-server mariadb-client postgresql)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
mkdir -p "$root"

# -- MariaDB ----------------------------------------------------------------------
my_data="$root/mariadb"
my_sock="$root/mariadb.sock"
if [ ! -d "$my_data/mysql" ]; then
    mkdir -p "$my_data"
    chown mysql:mysql "$my_data"
    mariadb-install-db --user=mysql --datadir="$my_data" --auth-root-authentication-method=socket \
        --skip-test-db >/dev/null
fi
chown mysql:mysql "$root"
if ! mariadb-admin --socket="$my_sock" ping >/dev/null 2>&1; then
    # --skip-name-resolve: loopback only, no DNS; nohup + & because there is no init.
    nohup mariadbd --user=mysql --datadir="$my_data" --socket="$my_sock" \
        --pid-file="$root/mariadb.pid" --port="$my_port" --bind-address=127.0.0.1 \
        --skip-name-resolve --log-error="$root/mariadb.log" >/dev/null 2>&1 &
    for _ in $(seq 1 60); do
        mariadb-admin --socket="$my_sock" ping >/dev/null 2>&1 && break
        sleep 0.5
    done
fi
mariadb-admin --socket="$my_sock" ping >/dev/null
mariadb --socket="$my_sock" <<SQL
CREATE DATABASE IF NOT EXISTS stealbalancer_test CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'stealbalancer'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`stealbalancer\\_%\`.* TO 'stealbalancer'@'127.0.0.1';
GRANT ALL PRIVILEGES ON stealbalancer_test.* TO 'stealbalancer'@'127.0.0.1';
SQL

# -- PostgreSQL -------------------------------------------------------------------
# A cluster of our own (not Debian's "main" on 5432), created with Debian's tools.
cluster=stealbalancer
if ! pg_lsclusters -h | awk -v c="$cluster" '$2 == c {f=1} END {exit !f}'; then
    pg_createcluster -q "$pg_version" "$cluster" -p "$pg_port" -d "$root/postgresql" \
        -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    conf="/etc/postgresql/$pg_version/$cluster/postgresql.conf"
    echo "listen_addresses = '127.0.0.1'" >>"$conf"
fi
if ! pg_lsclusters -h | awk -v c="$cluster" '$2 == c && $4 == "online" {f=1} END {exit !f}'; then
    pg_ctlcluster "$pg_version" "$cluster" start
fi
psql_admin() { runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 "$@"; }
psql_admin -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stealbalancer') THEN
        CREATE ROLE stealbalancer LOGIN CREATEDB PASSWORD '$password';
    END IF; END \$\$;"
psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'stealbalancer_test'" | grep -q 1 ||
    psql_admin -c "CREATE DATABASE stealbalancer_test OWNER stealbalancer"
echo "databases up: mariadb 127.0.0.1:$my_port, postgresql 127.0.0.1:$pg_port"
