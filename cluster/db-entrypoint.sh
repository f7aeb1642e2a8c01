#!/usr/bin/env bash
# MariaDB for Slurm accounting. The database and its user are created on first
# start from the per-cluster password secret; the data lives in a volume.
set -euo pipefail

PW_FILE=/run/secrets/db_password
DATADIR=/var/lib/mysql
log() { printf 'db: %s\n' "$*" >&2; }

[[ -s "$PW_FILE" ]] || { log "missing secret $PW_FILE (run make cluster-up, which generates it)"; exit 1; }
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
chown mysql:mysql "$DATADIR"

if [[ ! -d "$DATADIR/mysql" ]]; then
  log "initialising database directory"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db >/dev/null
fi

# Bootstrap SQL is idempotent, so a restart with the same password is harmless.
pw=$(cat "$PW_FILE")
init=$(mktemp /run/mysqld/init.XXXXXX.sql)
cat >"$init" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY '${pw}';
ALTER USER 'slurm'@'%' IDENTIFIED BY '${pw}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';
FLUSH PRIVILEGES;
SQL
chown mysql:mysql "$init"
chmod 0400 "$init"
unset pw
# Slurm's recommended InnoDB settings; bind on the cluster network only.
exec mariadbd --user=mysql --datadir="$DATADIR" --bind-address=0.0.0.0 \
  --init-file="$init" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
  --skip-name-resolve --performance-schema=OFF
