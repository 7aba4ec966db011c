#!/usr/bin/env bash
# Start a local PostgreSQL for the shared-study test and print its URL (installs Debian's package if missing).
# Used by .ci/run; safe to run again (idempotent). Listens on 127.0.0.1 only.
set -euo pipefail
# Only the URL goes to stdout (callers capture it with $(...)); everything the tools print goes to
# stderr, and the server daemon must not inherit the captured stdout or $(...) would never return.
setup() {
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  read -r ver name _ < <(pg_lsclusters --no-header | head -1)
  if [ -z "${ver:-}" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1); name=main
    pg_createcluster "$ver" "$name" >/dev/null
  fi
  pg_ctlcluster "$ver" "$name" start 2>/dev/null || true
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  runuser -u postgres -- psql -q -h 127.0.0.1 -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='defectnas') THEN CREATE ROLE defectnas LOGIN PASSWORD 'defectnas'; END IF; END\$\$;" >/dev/null 2>&1 \
    || runuser -u postgres -- psql -q -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='defectnas') THEN CREATE ROLE defectnas LOGIN PASSWORD 'defectnas'; END IF; END\$\$;" >/dev/null
  runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_database WHERE datname='defectnas'" | grep -q 1 \
    || runuser -u postgres -- createdb -O defectnas defectnas
}
setup >&2
echo "postgresql://defectnas:defectnas@127.0.0.1:5432/defectnas"
