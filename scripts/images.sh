#!/usr/bin/env bash
# Build the cbmflow images on this machine from Debian and Python packages alone (no image registry).
#
#   scripts/images.sh            build what is missing or changed (layer cache: a no-op re-run takes seconds)
#   scripts/images.sh --list     the image names and tags
#
# Images (all on one Debian bookworm base):
#   cbmflow-debian:bookworm   base: `docker pull debian:bookworm-slim` when a registry answers, else
#                             `debootstrap --variant=minbase bookworm` + `docker import` (~40 s, once)
#   cbmflow-python:bookworm   Python 3.11 venv with the official Airflow image's interface (docker/python.Dockerfile)
#   cbmflow-airflow:0.1.0     Airflow + cbmflow from the pinned requirements.txt (the project's Dockerfile,
#                             AIRFLOW_IMAGE=cbmflow-python:bookworm)
#   cbmflow-postgres:15       PostgreSQL 15 + PostGIS 3 (results DB and Airflow metadata DB)
#   cbmflow-redis:7           Redis (Celery broker)
#   cbmflow-s3:moto           S3 endpoint: moto server (pinned in requirements-dev.txt)
#
# Knobs: CBMFLOW_DEBIAN_MIRROR (http://deb.debian.org/debian), CBMFLOW_ROOTFS_DIR (/var/tmp/cbmflow-rootfs),
# CBMFLOW_REBUILD_BASE=1 (re-make the base). Builds run with `nice -n 10` and `--network host`
# (apt and PyPI are reached from the build containers through the host's network). Needs root (or the
# docker group) and, for the debootstrap base, root.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[images]\033[0m %s\n' "$*" >&2; }

BASE=cbmflow-debian:bookworm
PYTHON=cbmflow-python:bookworm
AIRFLOW=cbmflow-airflow:0.1.0
POSTGRES=cbmflow-postgres:15
REDIS=cbmflow-redis:7
S3=cbmflow-s3:moto
if [ "${1:-}" = --list ]; then printf '%s\n' "$BASE" "$PYTHON" "$AIRFLOW" "$POSTGRES" "$REDIS" "$S3"; exit 0; fi

have() { docker image inspect "$1" >/dev/null 2>&1; }

base_image() {  # cbmflow-debian:bookworm, pulled or made from packages
  if have "$BASE" && [ "${CBMFLOW_REBUILD_BASE:-0}" != 1 ]; then say "$BASE exists"; return 0; fi
  if timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    docker tag debian:bookworm-slim "$BASE"; say "$BASE = debian:bookworm-slim (pulled)"; return 0
  fi
  command -v debootstrap >/dev/null || { say "no registry and no debootstrap: apt-get install -y debootstrap"; exit 1; }
  local dir=${CBMFLOW_ROOTFS_DIR:-/var/tmp/cbmflow-rootfs}/bookworm mirror=${CBMFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  say "no registry image: debootstrap bookworm from $mirror into $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  nice -n 10 debootstrap --variant=minbase bookworm "$dir" "$mirror" > "$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; exit 1; }
  cat > "$dir/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
  # Smaller images: no apt caches, no docs in later installs.
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    > "$dir/etc/dpkg/dpkg.cfg.d/01-nodoc"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$dir/etc/apt/apt.conf.d/01-norecommends"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm ($mirror)" - "$BASE" >/dev/null
  rm -rf "$dir"
  say "$BASE imported from debootstrap"
}

build() {  # build TAG DOCKERFILE [build args...]
  local tag=$1 file=$2 t0=$SECONDS; shift 2
  say "building $tag ($file)"
  local args=(); for a in "$@"; do args+=(--build-arg "$a"); done
  DOCKER_BUILDKIT=0 nice -n 10 docker build -q --network host -f "$file" -t "$tag" "${args[@]}" . >/dev/null 2>"$BUILD_LOG" \
    || { tail -40 "$BUILD_LOG" >&2; say "build of $tag failed"; exit 1; }
  say "$tag built ($((SECONDS - t0)) s)"
}

BUILD_LOG=$(mktemp); trap 'rm -f "$BUILD_LOG"' EXIT
t0=$SECONDS
# This machine's extra CAs (e.g. a TLS-intercepting egress proxy) go into the images' trust store.
find docker/ca-certificates -name '*.crt' -delete
for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && cp "$c" docker/ca-certificates/; done
base_image
build "$PYTHON" docker/python.Dockerfile "BASE_IMAGE=$BASE"
build "$AIRFLOW" Dockerfile "AIRFLOW_IMAGE=$PYTHON" "PIP_INSTALL=uv pip install --no-cache"
build "$POSTGRES" docker/postgres.Dockerfile "BASE_IMAGE=$BASE"
build "$REDIS" docker/redis.Dockerfile "BASE_IMAGE=$BASE"
build "$S3" docker/s3.Dockerfile "PYTHON_IMAGE=$PYTHON"
say "images ready in $((SECONDS - t0)) s: $AIRFLOW $POSTGRES $REDIS $S3"
