#!/usr/bin/env bash
# The entrypoint of the cbmflow-python image: the subset of the official Airflow image's entrypoint
# that docker-compose.yaml uses. `_AIRFLOW_DB_MIGRATE=true` migrates the metadata DB first;
# `bash`/`sh`/`python`/`airflow`/`cbmflow` run as given, anything else is `airflow <args>` (as in the
# official image: `celery worker` is `airflow celery worker`).
set -euo pipefail
if [ "${_AIRFLOW_DB_MIGRATE:-false}" = true ]; then
  for _ in $(seq 60); do airflow db check >/dev/null 2>&1 && break; sleep 2; done
  airflow db migrate
fi
if [ $# -eq 0 ]; then exec airflow --help; fi
case "$1" in
  bash|sh|python|python3|airflow|cbmflow) exec "$@" ;;
esac
exec airflow "$@"
