#!/usr/bin/env bash
# Fresh-machine setup, safe to run any number of times:
#   venv (.venv) with pinned dependencies and the cbmflow command, PostGIS package, PostgreSQL
#   running, the results database with its schema, and Airflow's metadata database.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Python environment (uv is fast; it is installed into the user's Python if missing).
if ! command -v uv >/dev/null 2>&1; then
  say "installing uv"
  "$PY" -m pip install -q uv >/dev/null 2>&1 || "$PY" -m pip install uv
fi
UV=$(command -v uv || echo "$PY -m uv")
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  say "creating .venv with the pinned requirements"
  [ -x .venv/bin/python ] || $UV venv -q .venv --python "$PY"
  # runtime pins (what the production image installs) + the test and lint tools
  VIRTUAL_ENV=.venv $UV pip install -q -r requirements.txt -r requirements-dev.txt
  VIRTUAL_ENV=.venv $UV pip install -q -e . --no-deps
  echo "$want" > $stamp
else
  say ".venv is up to date"
fi

# 2. PostgreSQL with PostGIS.
pgver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1 || true)
pgver=${pgver:-15}
if [ ! -f "/usr/share/postgresql/$pgver/extension/postgis.control" ]; then
  say "installing postgresql-$pgver-postgis-3"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q "postgresql-$pgver-postgis-3" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "postgresql-$pgver-postgis-3" >/dev/null; }
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  say "starting PostgreSQL $pgver"
  pg_ctlcluster --skip-systemctl-redirect "$pgver" main start 2>/dev/null || pg_ctlcluster "$pgver" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# 2b. Redis: the Celery broker of the local cluster (make cluster, the fault-injection tests).
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || {
      $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; }
  fi
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi

# 2c. Debian's Chromium for the browser tests (driven by Playwright; never a browser download).
if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium (browser tests)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi

# 3. Results database and schema; Airflow metadata database (PostgreSQL, for concurrency).
export CBMFLOW_DSN=${CBMFLOW_DSN:-postgresql://postgres@127.0.0.1:5432/cbmflow}
.venv/bin/cbmflow db upgrade --create
psql -q -h 127.0.0.1 -U postgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname='cbmflow_airflow'" | grep -q 1 \
  || psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE cbmflow_airflow" >/dev/null
# shellcheck source=/dev/null
. scripts/airflow-env.sh
# The marker lives in AIRFLOW_HOME (wherever it is set) and holds the version and a hash of the metadata DB URL,
# so a new Airflow version or another metadata database is migrated again.
_migrated="$AIRFLOW_HOME/.migrated"
_want="$(.venv/bin/airflow version 2>/dev/null) $(printf '%s' "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" | sha1sum | cut -c1-12)"
if [ "$(cat "$_migrated" 2>/dev/null)" != "$_want" ]; then
  say "migrating the Airflow metadata database"
  .venv/bin/airflow db migrate >/dev/null
  mkdir -p "$AIRFLOW_HOME"
  printf '%s\n' "$_want" > "$_migrated"
fi
say "ready: $(.venv/bin/python -c 'import airflow,cbmflow;print("airflow",airflow.__version__,"cbmflow",cbmflow.__version__)')"
