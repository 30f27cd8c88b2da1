#!/usr/bin/env bash
# The local Celery cluster: Airflow 3 with the CeleryExecutor on this machine's Redis and PostgreSQL.
#
#   scripts/cluster.sh up          start (or complete) the cluster, wait until healthy, print the UI
#   scripts/cluster.sh down        stop every component (process groups: TERM, then KILL)
#   scripts/cluster.sh status      one line per component
#   scripts/cluster.sh env         print the cluster's environment (secrets masked)
#   scripts/cluster.sh start NAME  (re)start one component, e.g. worker-2 (fault tests)
#   scripts/cluster.sh kill NAME   kill -9 one component's whole process tree, task processes too (fault tests)
#   source scripts/cluster.sh      (with CBMFLOW_CLUSTER_SOURCE=1) only sets the environment
#
# This script is the ONE place with the cluster's AIRFLOW__* settings (on top of airflow-env.sh).
# Components: api-server, scheduler, dag-processor, triggerer, worker-1..N, and s3 (a moto S3 server,
# only when no CBMFLOW_S3_ENDPOINT is given). Each runs in its own process group (setsid) with its
# PID in $CBMFLOW_CLUSTER_DIR/<component>.pid and its log in $CBMFLOW_CLUSTER_DIR/logs/.
#
# Knobs (environment; defaults for `make cluster`):
#   WORKERS=2                     Celery workers          CBMFLOW_WORKER_CONCURRENCY=2 task slots each
#   CBMFLOW_API_PORT=8080         api-server port         CBMFLOW_CLUSTER_DIR=var/cluster
#   CBMFLOW_CLUSTER_META_DB=cbmflow_airflow_cluster       Airflow metadata DB (+ Celery result backend)
#   CBMFLOW_DSN=postgresql://postgres@127.0.0.1:5432/cbmflow   results DB (connection cbmflow_db)
#   CBMFLOW_PG=postgresql://postgres@127.0.0.1:5432       PostgreSQL server for the metadata DB
#   CBMFLOW_REDIS_URL=redis://127.0.0.1:6379/8            broker (a dedicated Redis DB number)
#   CBMFLOW_CLUSTER_NAME=cbmflow  Redis key prefix, so two clusters on one Redis never share a queue
#   CBMFLOW_S3_ENDPOINT           S3 endpoint (connection cbmflow_s3); unset: start moto on CBMFLOW_S3_PORT=9000
#   CBMFLOW_WORK_URI=s3://cbmflow-work/work, CBMFLOW_REPORT_URI=s3://cbmflow-work/reports
#   CBMFLOW_VISIBILITY_TIMEOUT=21600  seconds a task may run before Redis redelivers it (> longest task)
#   CBMFLOW_TI_HEARTBEAT_TIMEOUT=300  seconds without heartbeat before a killed worker's task is failed
#                                     and retried (Airflow's [scheduler] task_instance_heartbeat_timeout)
#   CBMFLOW_EXTRACT_CONCURRENCY   cap on parallel extract tasks (default: WORKERS x worker concurrency)
#   CBMFLOW_TASK_QUEUED_TIMEOUT=120   seconds a sent task may stay queued before it is sent again
#                                     (a message lost in a broker restart; does not use a retry)
#   CBMFLOW_TASK_PUBLISH_MAX_RETRIES=120  scheduler loops a task that cannot be sent is retried
#   CBMFLOW_CLUSTER_EXTRA_ENV     a file sourced last (tests: hooks, lower timeouts)
set -euo pipefail
_croot=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

cluster_env() {
  CLUSTER_DIR=${CBMFLOW_CLUSTER_DIR:-$_croot/var/cluster}
  mkdir -p "$CLUSTER_DIR/logs"
  export WORKERS=${WORKERS:-2}
  export CBMFLOW_WORKER_CONCURRENCY=${CBMFLOW_WORKER_CONCURRENCY:-2}
  export CBMFLOW_API_PORT=${CBMFLOW_API_PORT:-8080}
  local pg=${CBMFLOW_PG:-postgresql://postgres@127.0.0.1:5432}
  META_DB=${CBMFLOW_CLUSTER_META_DB:-cbmflow_airflow_cluster}
  export CBMFLOW_DSN=${CBMFLOW_DSN:-$pg/cbmflow}
  local redis=${CBMFLOW_REDIS_URL:-redis://127.0.0.1:6379/8}
  local name=${CBMFLOW_CLUSTER_NAME:-cbmflow}
  if [ -z "${CBMFLOW_S3_ENDPOINT:-}" ]; then
    export CBMFLOW_S3_PORT=${CBMFLOW_S3_PORT:-9000}
    CBMFLOW_S3_ENDPOINT=http://127.0.0.1:$CBMFLOW_S3_PORT
    START_S3=1
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-cbmflow} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-cbmflow-secret}
  else
    START_S3=0
  fi
  export CBMFLOW_S3_ENDPOINT
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
  export AWS_ENDPOINT_URL=$CBMFLOW_S3_ENDPOINT

  # Airflow: everything every component needs, the same for all of them.
  export AIRFLOW_HOME=$CLUSTER_DIR/home
  export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://${pg#postgresql://}/$META_DB
  # shellcheck source=/dev/null
  . "$_croot/scripts/airflow-env.sh"
  export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$CLUSTER_DIR/passwords.json
  export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
  export AIRFLOW__CORE__HOSTNAME_CALLABLE=cbmflow_dev.cluster.worker_hostname
  # No more tasks sent than the workers have slots: a sent task never waits long in the broker, so
  # "queued for longer than task_queued_timeout" means its message was lost (broker restart).
  export AIRFLOW__CORE__PARALLELISM=${CBMFLOW_PARALLELISM:-$((WORKERS * CBMFLOW_WORKER_CONCURRENCY))}
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$CBMFLOW_API_PORT/execution/
  export AIRFLOW__API__BASE_URL=http://127.0.0.1:$CBMFLOW_API_PORT
  export AIRFLOW__API__PORT=$CBMFLOW_API_PORT
  export AIRFLOW__API__WORKERS=1
  export AIRFLOW__CELERY__BROKER_URL=$redis
  export AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql://${pg#postgresql://}/$META_DB
  export AIRFLOW__CELERY__WORKER_CONCURRENCY=$CBMFLOW_WORKER_CONCURRENCY
  export AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER=1
  export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT=${CBMFLOW_VISIBILITY_TIMEOUT:-21600}
  export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX=$name:
  # Broker loss (docs/operations.md, "Running on a cluster"). A task whose message the broker lost
  # (Redis keeps nothing on disk) is queued in Airflow but in no queue: after task_queued_timeout the
  # scheduler puts it back to scheduled and sends it again, without using up one of the task's
  # retries, up to num_stuck_in_queued_retries times (each logged as an audit-log event). A task that
  # cannot be sent (broker down) is retried by the executor for task_publish_max_retries scheduler
  # loops (each send waits up to operation_timeout while Celery's publish retry policy reconnects)
  # instead of being failed "externally" at once.
  export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=${CBMFLOW_TASK_QUEUED_TIMEOUT:-120}
  export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL=${CBMFLOW_TASK_QUEUED_CHECK:-15}
  export AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES=${CBMFLOW_STUCK_QUEUED_RETRIES:-10}
  export AIRFLOW__CELERY__OPERATION_TIMEOUT=${CBMFLOW_CELERY_OPERATION_TIMEOUT:-2}
  export AIRFLOW__CELERY__TASK_PUBLISH_MAX_RETRIES=${CBMFLOW_TASK_PUBLISH_MAX_RETRIES:-120}
  export AIRFLOW__CELERY__EXTRA_CELERY_CONFIG='{"task_publish_retry_policy": {"max_retries": 20, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}, "broker_connection_max_retries": null}'
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=${CBMFLOW_TI_HEARTBEAT_TIMEOUT:-300}
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=${CBMFLOW_TI_HEARTBEAT_CHECK:-10}
  export AIRFLOW__LOGGING__BASE_LOG_FOLDER=$CLUSTER_DIR/logs/tasks
  # cbmflow: connections for every component (the api-server too), shared work storage, concurrency.
  local dsn_rest=${CBMFLOW_DSN#postgresql://}
  export AIRFLOW_CONN_CBMFLOW_DB=postgres://$dsn_rest
  export AIRFLOW_CONN_CBMFLOW_S3="{\"conn_type\": \"aws\", \"login\": \"$AWS_ACCESS_KEY_ID\", \"password\": \"$AWS_SECRET_ACCESS_KEY\", \"extra\": {\"endpoint_url\": \"$CBMFLOW_S3_ENDPOINT\", \"region_name\": \"$AWS_DEFAULT_REGION\"}}"
  export CBMFLOW_WORK_URI=${CBMFLOW_WORK_URI:-s3://cbmflow-work/work}
  export CBMFLOW_REPORT_URI=${CBMFLOW_REPORT_URI:-$CBMFLOW_WORK_URI/reports}
  export CBMFLOW_EXTRACT_CONCURRENCY=${CBMFLOW_EXTRACT_CONCURRENCY:-$((WORKERS * CBMFLOW_WORKER_CONCURRENCY))}
  # Shared secrets: generated once, mode 600, read by every component, never printed.
  local secrets=$CLUSTER_DIR/secrets.env
  if [ ! -s "$secrets" ]; then
    (umask 077 && "$_croot/.venv/bin/python" - > "$secrets" <<'EOF'
import secrets
from cryptography.fernet import Fernet
print(f"AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(48)}")
print(f"AIRFLOW__API__SECRET_KEY={secrets.token_urlsafe(32)}")
print(f"AIRFLOW__CORE__FERNET_KEY={Fernet.generate_key().decode()}")
EOF
    )
  fi
  chmod 600 "$secrets"
  set -a
  # shellcheck source=/dev/null
  . "$secrets"
  set +a
  if [ ! -s "$CLUSTER_DIR/passwords.json" ]; then
    (umask 077 && "$_croot/.venv/bin/python" -c 'import json,secrets;print(json.dumps({"admin": secrets.token_urlsafe(12)}))' \
      > "$CLUSTER_DIR/passwords.json")
  fi
  if [ -n "${CBMFLOW_CLUSTER_EXTRA_ENV:-}" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$CBMFLOW_CLUSTER_EXTRA_ENV"
    set +a
  fi
}

say() { printf '\033[1m[cluster]\033[0m %s\n' "$*" >&2; }

pidfile() { echo "$CLUSTER_DIR/$1.pid"; }

alive() {  # alive NAME: its process group leader still runs
  local f; f=$(pidfile "$1")
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

components() {
  local c="api-server scheduler dag-processor triggerer"
  [ "${START_S3:-0}" = 1 ] && c="s3 $c"
  for i in $(seq "$WORKERS"); do c="$c worker-$i"; done
  echo "$c"
}

command_of() {  # the command line that runs component NAME
  case "$1" in
    s3) echo "moto_server -H 127.0.0.1 -p $CBMFLOW_S3_PORT" ;;
    api-server) echo "airflow api-server --host 127.0.0.1 --port $CBMFLOW_API_PORT --workers 1" ;;
    scheduler) echo "airflow scheduler" ;;
    dag-processor) echo "airflow dag-processor" ;;
    triggerer) echo "airflow triggerer --skip-serve-logs" ;;
    worker-*) echo "airflow celery worker --celery-hostname ${1}@%h --concurrency $CBMFLOW_WORKER_CONCURRENCY --skip-serve-logs --without-gossip --without-mingle" ;;
    *) say "unknown component $1"; return 1 ;;
  esac
}

start_one() {  # start NAME in its own session (process group) unless it runs
  local name=$1 cmd
  if alive "$name"; then return 0; fi
  cmd=$(command_of "$name")
  echo "=== start $(date -u +%FT%TZ): $cmd" >> "$CLUSTER_DIR/logs/$name.log"
  # shellcheck disable=SC2086
  CBMFLOW_WORKER_NAME=$name setsid $cmd >> "$CLUSTER_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
}

stop_one() {  # stop NAME's whole process group: TERM, up to 15 s, then KILL
  local name=$1 f pid
  f=$(pidfile "$name")
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f"
}

tree_of() {  # PID and every descendant (task supervisors and task processes may leave the group)
  local todo=$1 out="" p kids
  while [ -n "$todo" ]; do
    set -- $todo; p=$1; shift; todo="$*"
    out="$out $p"
    kids=$(ps -o pid= --ppid "$p" 2>/dev/null | tr -s ' \n' ' ' || true)
    if [ -n "${kids// /}" ]; then todo="$todo $kids"; fi
  done
  echo "$out"
}

kill_one() {  # kill -9 NAME's whole process tree at once (a machine lost, for fault tests)
  local f pid victims; f=$(pidfile "$1")
  if [ -s "$f" ]; then
    pid=$(cat "$f")
    victims=$(tree_of "$pid")
    kill -STOP -- "-$pid" 2>/dev/null || true  # freeze first: nothing forks or reports while we look
    victims="$victims $(tree_of "$pid")"
    kill -KILL -- "-$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $victims 2>/dev/null || true
  fi
  rm -f "$f"
}

prepare() {  # metadata DB migrated, results DB schema, work bucket
  local pg=${CBMFLOW_PG:-postgresql://postgres@127.0.0.1:5432}
  psql -q "$pg/postgres" -tc "SELECT 1 FROM pg_database WHERE datname='$META_DB'" | grep -q 1 \
    || psql -q "$pg/postgres" -c "CREATE DATABASE \"$META_DB\"" >/dev/null
  local stamp=$CLUSTER_DIR/home/.migrated-$META_DB want
  want=$(airflow version 2>/dev/null)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "migrating the metadata database $META_DB"
    airflow db migrate > "$CLUSTER_DIR/logs/db-migrate.log" 2>&1
    echo "$want" > "$stamp"
  fi
  cbmflow db upgrade --create > "$CLUSTER_DIR/logs/db-upgrade.log" 2>&1
}

wait_healthy() {  # api-server answers, scheduler/triggerer/dag-processor healthy, N workers ping
  local deadline=$((SECONDS + ${CBMFLOW_CLUSTER_START_TIMEOUT:-240}))
  while [ $SECONDS -lt $deadline ]; do
    for c in $(components); do
      alive "$c" || { say "$c died; its log:"; tail -20 "$CLUSTER_DIR/logs/$c.log" >&2; return 1; }
    done
    if "$_croot/.venv/bin/python" -m cbmflow_dev.cluster health --quiet 2>/dev/null; then return 0; fi
    sleep 2
  done
  say "not healthy after ${CBMFLOW_CLUSTER_START_TIMEOUT:-240} s"
  "$_croot/.venv/bin/python" -m cbmflow_dev.cluster health >&2 || true
  return 1
}

up() {
  prepare
  if [ "${START_S3:-0}" = 1 ]; then
    start_one s3
    for _ in $(seq 40); do curl -s -o /dev/null "$CBMFLOW_S3_ENDPOINT" && break; sleep 0.25; done
  fi
  "$_croot/.venv/bin/python" -c 'import sys; from cbmflow.core import storage; [storage.ensure_bucket(u) for u in sys.argv[1:]]' \
    "$CBMFLOW_WORK_URI" "$CBMFLOW_REPORT_URI"
  for c in $(components); do [ "$c" = s3 ] || start_one "$c"; done
  say "waiting for the cluster to be healthy ($WORKERS worker(s))"
  wait_healthy
  say "up: UI http://127.0.0.1:$CBMFLOW_API_PORT  login: admin / $("$_croot/.venv/bin/python" -c 'import json,sys;print(json.load(open(sys.argv[1]))["admin"])' "$CLUSTER_DIR/passwords.json")"
  say "logs: $CLUSTER_DIR/logs/   stop: make cluster-down"
}

down() {  # TERM every component's process group at once, wait up to 15 s, then KILL what is left
  local names pids="" c f
  names=$(cd "$CLUSTER_DIR" && ls -- *.pid 2>/dev/null | sed 's/\.pid$//' || true)
  for c in $names; do
    f=$(pidfile "$c"); [ -s "$f" ] || continue
    pids="$pids $(cat "$f")"
    kill -TERM -- "-$(cat "$f")" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    local left=0
    for p in $pids; do kill -0 -- "-$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.5
  done
  for p in $pids; do kill -KILL -- "-$p" 2>/dev/null || true; done
  for c in $names; do rm -f "$(pidfile "$c")"; done
  say "down"
}

status() {
  for c in $(components); do
    if alive "$c"; then echo "$c running (pid $(cat "$(pidfile "$c")"))"; else echo "$c stopped"; fi
  done
}

cluster_env
if [ "${CBMFLOW_CLUSTER_SOURCE:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env | grep -E '^(AIRFLOW|CBMFLOW|AWS)' | sed -E 's/^([A-Z_]*(SECRET|FERNET|PASSWORD|KEY)[A-Z_]*)=.*/\1=***/; s/("password": ")[^"]*/\1***/' | sort ;;
  start) start_one "$2" ;;
  kill) kill_one "$2" ;;
  stop) stop_one "$2" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
