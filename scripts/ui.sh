#!/usr/bin/env bash
# The Airflow UI with the cbmflow pages (flag list, parcel view, failed scenes) on this checkout's
# metadata and results databases: `airflow standalone` (api-server, scheduler, dag-processor,
# triggerer) on port CBMFLOW_API_PORT (or AIRFLOW__API__PORT; default 8080), listening on
# CBMFLOW_UI_HOST (default 127.0.0.1: this machine only; 0.0.0.0 to serve the network), with
# CBMFLOW_UI_WORKERS api-server workers (default 1) and CBMFLOW_UI_PARALLELISM task slots (default 4)
# instead of Airflow's 32 idle LocalExecutor workers. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/airflow-env.sh
port=$AIRFLOW__API__PORT
export AIRFLOW__API__HOST=${CBMFLOW_UI_HOST:-${AIRFLOW__API__HOST:-127.0.0.1}}
export AIRFLOW__API__WORKERS=${CBMFLOW_UI_WORKERS:-${AIRFLOW__API__WORKERS:-1}}
export AIRFLOW__CORE__PARALLELISM=${CBMFLOW_UI_PARALLELISM:-${AIRFLOW__CORE__PARALLELISM:-4}}
host=$AIRFLOW__API__HOST
[ "$host" = "0.0.0.0" ] && echo "warning: CBMFLOW_UI_HOST=0.0.0.0 serves the UI to the whole network" >&2
pwfile=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
if [ -z "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-}" ] && [ ! -s "$pwfile" ]; then
  # the admin's password, made once (SimpleAuthManager keeps an existing file as it is)
  .venv/bin/python -c 'import json,secrets,sys; json.dump({"admin": secrets.token_urlsafe(12)}, open(sys.argv[1], "w"))' "$pwfile"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is in use: pick another one, e.g. CBMFLOW_API_PORT=8091 make ui" >&2
  exit 1
fi
echo "cbmflow UI:  http://$host:$port/   (log in as admin, password: $(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("admin", "see " + sys.argv[1]))' "$pwfile" 2>/dev/null || echo "in $pwfile"))"
echo "  flag list: http://$host:$port/cbmflow/flags   failed scenes: http://$host:$port/cbmflow/scenes   ($AIRFLOW__API__WORKERS api worker(s), parallelism $AIRFLOW__CORE__PARALLELISM)"
exec airflow standalone
