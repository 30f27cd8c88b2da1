# cbmflow-python: Python 3.11 (Debian bookworm's) in a virtualenv, the interface of the official
# apache/airflow image that the project's Dockerfile relies on: user airflow (uid 50000, gid 0),
# AIRFLOW_HOME=/opt/airflow, /entrypoint, /usr/bin/dumb-init, `pip install` as user airflow.
# Built by scripts/images.sh on a base made from Debian packages (no image registry needed).
ARG BASE_IMAGE=cbmflow-debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates curl dumb-init procps libexpat1 libgomp1 tzdata \
    && rm -rf /var/lib/apt/lists/*
# The build machine's extra CAs (an egress proxy's), so pip/uv/boto reach PyPI and endpoints over TLS.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
RUN useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/logs /opt/airflow/plugins /opt/airflow/config /opt/venv \
    && chown -R airflow:0 /opt/airflow /opt/venv && chmod -R g+rwX /opt/airflow
COPY docker/entrypoint.sh /entrypoint
RUN chmod 755 /entrypoint
USER airflow
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin AIRFLOW_HOME=/opt/airflow \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# uv installs the pinned requirements ~10x faster than pip (the Dockerfile's PIP_INSTALL argument).
ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD ["--help"]
