#!/usr/bin/env bash
# The deployment test (CI: `make deploy-test`): images built here, the compose stack, a one-node swarm.
#
#   scripts/deploy-test.sh [all|compose|swarm]     (default all)
#
#  1. dockerd (installs docker.io, docker-compose, debootstrap with apt-get when missing; starts
#     dockerd when it is not running and stops it again at the end)
#  2. scripts/images.sh (layer cache: seconds when nothing changed)
#  3. the demo on the host (`cbmflow demo` into a private results DB), in the background: its row counts
#     are what the stacks must reproduce (CBMFLOW_DEPLOY_HOST_COUNTS=<file> reuses a saved COUNTS line)
#  4. compose: docker-compose.yaml + docker-compose.local.yaml with fresh random passwords in a private
#     env file; the demo's DAGs through the REST API (cbmflow_dev.deploy run); the workbench must refuse
#     an anonymous request and answer behind the login; row counts and checksums must equal the host's
#  5. swarm: `docker swarm init` on loopback, `docker stack deploy` of the same files + the swarm override,
#     2 worker replicas; extraction is paused in every task (test hook), one worker container is killed
#     with `docker kill`, the pause lifted: the run must end green with rows identical to the clean run
# Everything it starts (stack, swarm membership, containers, volumes, networks, dockerd) is removed on
# exit, also on failure. Host ports 18080-18083 on 127.0.0.1 only; the containers' own network has no
# route out. Times of every phase are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-all}
WORK=$ROOT/var/deploy-test
PROJECT=cbmflowdt
STACK=cbmflowst
HOST_DSN=${CBMFLOW_DEPLOY_HOST_DSN:-postgresql://postgres@127.0.0.1:5432/cbmflow_deploytest}
FILES=(-f docker-compose.yaml -f docker-compose.local.yaml)
T0=$SECONDS
TIMES=()
say() { printf '\033[1m[deploy-test %4ds]\033[0m %s\n' $((SECONDS - T0)) "$*" >&2; }
mark() { TIMES+=("$1: $(($SECONDS - $2)) s"); say "$1 done in $(($SECONDS - $2)) s"; }
die() { say "FAILED: $*"; exit 1; }

STARTED_DOCKERD=0 JOINED_SWARM=0 HOST_PID=""
cleanup() {
  local rc=$?
  set +e
  say "tearing down (exit $rc)"
  [ -n "$HOST_PID" ] && kill -- "-$HOST_PID" 2>/dev/null
  if docker info >/dev/null 2>&1; then
    if docker stack ls 2>/dev/null | grep -q "^$STACK "; then
      docker stack rm "$STACK" >/dev/null
      for _ in $(seq 60); do [ -z "$(docker ps -aq -f "label=com.docker.stack.namespace=$STACK")" ] && break; sleep 2; done
    fi
    [ "$JOINED_SWARM" = 1 ] && docker swarm leave --force >/dev/null 2>&1
    docker volume ls -q -f "label=com.docker.stack.namespace=$STACK" | xargs -r docker volume rm >/dev/null 2>&1
    docker-compose --env-file "$WORK/env" -p "$PROJECT" "${FILES[@]}" down -v --remove-orphans >/dev/null 2>&1
    docker network ls -q -f "label=com.docker.stack.namespace=$STACK" | xargs -r docker network rm >/dev/null 2>&1
  fi
  if [ "$STARTED_DOCKERD" = 1 ] && [ -s "$WORK/dockerd.pid" ]; then
    kill "$(cat "$WORK/dockerd.pid")" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$(cat "$WORK/dockerd.pid")" 2>/dev/null || break; sleep 1; done
  fi
  say "times: ${TIMES[*]:-none}; total $((SECONDS - T0)) s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. docker ---------------------------------------------------------------------------------------
t=$SECONDS
mkdir -p "$WORK"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >"$WORK/apt.log" 2>&1 \
    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >"$WORK/apt.log" 2>&1; } \
    || { tail "$WORK/apt.log"; die "apt-get install"; }
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  setsid dockerd --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$WORK/dockerd.pid"
  STARTED_DOCKERD=1
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail "$WORK/dockerd.log"; die "dockerd did not start"; }
fi
mark docker $t

# --- 3. the demo on the host (background) -------------------------------------------------------------
host_demo() {
  set -e
  psql -q "${HOST_DSN%/*}/postgres" -c "DROP DATABASE IF EXISTS \"${HOST_DSN##*/}\" WITH (FORCE)" >/dev/null
  export CBMFLOW_DSN=$HOST_DSN AIRFLOW_HOME=$WORK/host-airflow
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$WORK/host-airflow/airflow.db
  rm -rf "$AIRFLOW_HOME" "$WORK/host-demo"
  # shellcheck source=/dev/null
  . scripts/airflow-env.sh
  .venv/bin/cbmflow db upgrade --create >/dev/null
  airflow db migrate >/dev/null 2>&1
  nice -n 10 .venv/bin/cbmflow demo --out "$WORK/host-demo"
  .venv/bin/python -m cbmflow_dev.deploy counts | grep '^COUNTS ' > "$WORK/host-counts.txt"
}
if [ "$MODE" != swarm ] || [ -z "${CBMFLOW_DEPLOY_HOST_COUNTS:-}" ]; then
  if [ -n "${CBMFLOW_DEPLOY_HOST_COUNTS:-}" ]; then
    cp "$CBMFLOW_DEPLOY_HOST_COUNTS" "$WORK/host-counts.txt"
  else
    [ -x .venv/bin/cbmflow ] || bash scripts/setup.sh >/dev/null
    rm -f "$WORK/host-counts.txt"
    say "make demo's pipeline on the host (background, log $WORK/host-demo.log)"
    ( setsid bash -c "$(declare -f host_demo); HOST_DSN='$HOST_DSN' WORK='$WORK' host_demo" \
        > "$WORK/host-demo.log" 2>&1 ) &
    HOST_PID=$!
    HOST_T0=$SECONDS
  fi
fi

# --- 2. images ----------------------------------------------------------------------------------------
t=$SECONDS
bash scripts/images.sh
mark images $t

# The stack's settings: fresh random passwords per run, in a private env file (never in code).
DATA=$WORK/data
rand() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
( umask 077; cat > "$WORK/env" <<EOF
AIRFLOW_UID=50000
AIRFLOW_DB_PASSWORD=$(rand)
RESULTS_DB_PASSWORD=$(rand)
RESULTS_READER_PASSWORD=$(rand)
MINIO_ROOT_USER=cbmflow
MINIO_ROOT_PASSWORD=$(rand)
WORKER_CONCURRENCY=2
CBMFLOW_BIND=127.0.0.1
CBMFLOW_UI_PORT=18080
CBMFLOW_RESULTS_PORT=18081
MINIO_PORT=18082
MINIO_CONSOLE_PORT=18083
CBMFLOW_DATA_DIR=$DATA
TASK_HEARTBEAT_TIMEOUT=12
TASK_HEARTBEAT_CHECK=2
CBMFLOW_RETRY_DELAY_S=3
EOF
)
fresh_data() {  # the shared data folder: the AT declarations the driver simulates from, a hook folder
  rm -rf "$DATA"; mkdir -p "$DATA/shared/parcels" "$DATA/hooks"
  cp "$(.venv/bin/python -c 'from cbmflow.core.config import shared_data_dir; print(shared_data_dir())')/parcels/at_schlaege_2025.gpkg.zip" \
    "$DATA/shared/parcels/"
  chown -R 50000:0 "$DATA"
}
api_container() {  # the api-server container of the compose project or the stack
  docker ps -q -f "label=com.docker.compose.project=$PROJECT" -f "label=com.docker.compose.service=airflow-apiserver" | sed -n 1p
  docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_airflow-apiserver" -f health=healthy | sed -n 1p
}
drive() {  # drive ARGS...: cbmflow_dev.deploy inside the api-server container
  docker exec -e CBMFLOW_SHARED_DATA=/opt/airflow/data/shared -e AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING \
    "$(api_container | sed -n 1p)" python -m cbmflow_dev.deploy "$@"
}
compare() {  # compare NAME FILE_A FILE_B [AOI [KEYS]]: the COUNTS lines must be equal (only AOI / KEYS if given)
  python3 - "$@" <<'EOF'
import json, sys
name, a, b = sys.argv[1:4]
aoi = sys.argv[4] if len(sys.argv) > 4 else None
keys = sys.argv[5].split(",") if len(sys.argv) > 5 else None
load = lambda f: json.loads(next(l for l in open(f) if l.startswith("COUNTS "))[7:])
x, y = load(a), load(b)
if aoi:
    x, y = {aoi: x[aoi]}, {aoi: y[aoi]}
bad = []
for k in sorted(set(x) | set(y)):
    for t in sorted(set(x.get(k, {})) | set(y.get(k, {}))):
        if keys and t not in keys:
            continue
        u, v = x.get(k, {}).get(t), y.get(k, {}).get(t)
        if u == v:
            continue
        if t in ("markers", "compliance") and u == {}:
            # make demo runs detect_markers for AT only; the stack's scheduler also runs it on its
            # asset schedule after every extraction, so the stack has markers for more AOIs.
            print(f"  {name}: {k}.{t}: only on the stack (asset-triggered detect_markers): {v}")
            continue
        bad.append(f"  {name}: {k}.{t}: {u} != {v}")
if bad:
    print("\n".join(bad))
    sys.exit(f"{name}: row counts differ")
for k, v in x.items():
    sig = {band: n for band, (n, _) in v["signatures"].items()}
    extra = "" if keys else (f", period_means {v['period_means']}, markers {v['markers']}, "
                             f"compliance {v['compliance']}, flags {v['flags']}")
    print(f"  {name}: {k}: parcels {v['parcels']}, signature rows (checksums equal) {sig}{extra}: identical")
EOF
}
wait_host_counts() {
  [ -s "$WORK/host-counts.txt" ] && return 0
  [ -n "$HOST_PID" ] || die "no host counts"
  say "waiting for the host demo"
  wait "$HOST_PID" || { tail -20 "$WORK/host-demo.log"; die "the host demo failed"; }
  HOST_PID=""
  mark host-demo "$HOST_T0"
  [ -s "$WORK/host-counts.txt" ] || die "the host demo wrote no counts"
}

# --- 4. compose ---------------------------------------------------------------------------------------
if [ "$MODE" = all ] || [ "$MODE" = compose ]; then
  t=$SECONDS
  rm -f "$WORK/clean-counts.txt"
  fresh_data
  docker-compose --env-file "$WORK/env" -p "$PROJECT" "${FILES[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  say "docker-compose up (postgres, results, redis, s3, init, api-server, scheduler, dag-processor, triggerer, worker)"
  docker-compose --env-file "$WORK/env" -p "$PROJECT" "${FILES[@]}" up -d --no-build 2>&1 | grep -vE '^(Creating|Starting)' || true
  for _ in $(seq 90); do
    [ "$(docker ps -q -f "label=com.docker.compose.project=$PROJECT" -f health=healthy | wc -l)" -ge 9 ] && break; sleep 5
  done
  docker ps --format '{{.Names}}\t{{.Status}}' -f "label=com.docker.compose.project=$PROJECT"
  [ "$(docker ps -q -f "label=com.docker.compose.project=$PROJECT" -f health=healthy | wc -l)" -ge 9 ] \
    || die "the compose stack is not healthy"
  mark compose-up $t
  t=$SECONDS
  drive run | tee "$WORK/compose-run.log" | grep -E '^(==|   |COUNTS)' | cut -c1-200
  mark compose-run $t
  # The workbench: refused without the login, answered with it.
  wb="http://127.0.0.1:18080/cbmflow/api/aois/sim/2025/parcels?limit=5"
  anon=$(curl -s -o /dev/null -w '%{http_code}' "$wb")
  pw=$(docker exec "$(api_container | sed -n 1p)" python -c 'import json; print(json.load(open("/opt/airflow/secrets/passwords.json"))["admin"])')
  token=$(curl -s -X POST -H 'Content-Type: application/json' -d "{\"username\": \"admin\", \"password\": \"$pw\"}" \
    http://127.0.0.1:18080/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  authed=$(curl -s -o "$WORK/workbench.json" -w '%{http_code}' -H "Authorization: Bearer $token" "$wb")
  page=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/cbmflow/flags)
  say "workbench: /cbmflow/flags anonymous HTTP $page (to the login); $wb anonymous HTTP $anon, logged in HTTP $authed: $(head -c 160 "$WORK/workbench.json")"
  [ "$anon" = 401 ] || [ "$anon" = 403 ] || [ "${anon:0:1}" = 3 ] || die "the workbench answered an anonymous request ($anon)"
  [ "$authed" = 200 ] || die "the workbench did not answer behind the login ($authed)"
  wait_host_counts
  compare "compose vs make demo" "$WORK/host-counts.txt" "$WORK/compose-run.log"
  grep '^COUNTS ' "$WORK/compose-run.log" > "$WORK/clean-counts.txt"
  t=$SECONDS
  docker-compose --env-file "$WORK/env" -p "$PROJECT" "${FILES[@]}" down -v --remove-orphans >/dev/null 2>&1
  mark compose-down $t
fi

# --- 5. swarm -----------------------------------------------------------------------------------------
if [ "$MODE" = all ] || [ "$MODE" = swarm ]; then
  t=$SECONDS
  # After the compose phase the data folder keeps its simulated archive (deterministic: reused).
  [ -s "$WORK/clean-counts.txt" ] && [ -d "$DATA/hooks" ] || fresh_data
  rm -f "$DATA"/hooks/*
  # Swarm refuses a bind mount whose source is missing (compose creates it): logs/ and config/ are
  # not in git, so a fresh clone's tasks would be rejected ("bind source path does not exist").
  mkdir -p logs config
  if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
    JOINED_SWARM=1
  fi
  # Test only: every extract task waits while $DATA/hooks/read.pause exists (cbmflow.core.faults).
  cat > "$WORK/swarm-faults.yaml" <<'EOF'
services:
  airflow-worker:
    environment:
      CBMFLOW_TEST_HOOK_DIR: /opt/airflow/data/hooks
EOF
  # The same files, rendered by docker-compose (interpolation, merging) into what swarm accepts.
  docker-compose --env-file "$WORK/env" "${FILES[@]}" -f docker-compose.swarm.yaml -f "$WORK/swarm-faults.yaml" config \
    | .venv/bin/python scripts/swarm-config.py \
    | docker stack deploy --resolve-image never -c - "$STACK" 2>&1 | grep -v '^Creating' || true
  for _ in $(seq 120); do
    n=$(docker ps -q -f "label=com.docker.stack.namespace=$STACK" -f health=healthy | wc -l)
    [ "$n" -ge 10 ] && break; sleep 5
  done
  docker service ls -f "label=com.docker.stack.namespace=$STACK" --format '{{.Name}}\t{{.Replicas}}'
  [ "$n" -ge 10 ] || die "the swarm stack is not healthy ($n healthy containers)"
  mark swarm-up $t
  t=$SECONDS
  touch "$DATA/hooks/read.pause"
  drive run --only-at > "$WORK/swarm-run.log" 2>&1 &
  RUN_PID=$!
  victim=""
  for _ in $(seq 180); do
    if ls "$DATA"/hooks/read.*.waiting >/dev/null 2>&1; then
      # sed reads to the end (head would close the pipe early: SIGPIPE, exit 141 under pipefail)
      victim=$(drive running extract_signatures 2>/dev/null | sed -n 1p || true)
      [ -n "$victim" ] && break
    fi
    sleep 2
  done
  [ -n "$victim" ] || { kill $RUN_PID; die "no extract task paused"; }
  cid=$(docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_airflow-worker" | grep "^${victim:0:12}" || true)
  [ -n "$cid" ] || { kill $RUN_PID; die "task host $victim is no worker container"; }
  say "extraction paused in $(ls "$DATA"/hooks/read.*.waiting | wc -l) task(s); docker kill worker container $cid"
  docker kill "$cid" >/dev/null
  rm -f "$DATA/hooks/read.pause"
  wait $RUN_PID || { tail -30 "$WORK/swarm-run.log"; die "the swarm run failed"; }
  grep -E '^(==|   )' "$WORK/swarm-run.log"
  mark swarm-kill-run $t
  say "worker replicas now: $(docker service ls -f "name=${STACK}_airflow-worker" --format '{{.Replicas}}')"
  if [ -s "$WORK/clean-counts.txt" ]; then clean=$WORK/clean-counts.txt; else wait_host_counts; clean=$WORK/host-counts.txt; fi
  compare "swarm with a killed worker vs clean run" "$clean" "$WORK/swarm-run.log" at parcels,signatures
fi
say "PASSED"
