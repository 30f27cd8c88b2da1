#!/usr/bin/env bash
# The Airflow UI with the cbmflow pages (flag list, parcel view, failed scenes) on this checkout's
# metadata and results databases: `airflow standalone` (api-server, scheduler, dag-processor,
# triggerer) on port CBMFLOW_API_PORT (or AIRFLOW__API__PORT; default 8080). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/airflow-env.sh
port=$AIRFLOW__API__PORT
pwfile=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
if [ -z "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-}" ] && [ ! -s "$pwfile" ]; then
  # the admin's password, made once (SimpleAuthManager keeps an existing file as it is)
  .venv/bin/python -c 'import json,secrets,sys; json.dump({"admin": secrets.token_urlsafe(12)}, open(sys.argv[1], "w"))' "$pwfile"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is in use: pick another one, e.g. CBMFLOW_API_PORT=8091 make ui" >&2
  exit 1
fi
echo "cbmflow UI:  http://localhost:$port/   (log in as admin, password: $(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("admin", "see " + sys.argv[1]))' "$pwfile" 2>/dev/null || echo "in $pwfile"))"
echo "  flag list: http://localhost:$port/cbmflow/flags   failed scenes: http://localhost:$port/cbmflow/scenes"
exec airflow standalone
