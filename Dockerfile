# The cbmflow Airflow image: an Airflow base image + pinned requirements + the cbmflow package.
# AIRFLOW_IMAGE is the base: the official apache/airflow image where a registry is reachable, or
# cbmflow-python:bookworm built from Debian packages by scripts/images.sh (same interface: user
# airflow, /entrypoint, dumb-init; requirements.txt brings Airflow itself, pinned).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
# How requirements are installed: pip on the official image, uv on cbmflow-python (much faster).
ARG PIP_INSTALL="pip install --no-cache-dir"
USER root
# Optional processors (large downloads, not bundled by default): ESA SNAP with s1tbx and Sen2Cor.
# Set SNAP_INSTALLER_URL / SEN2COR_URL at build time to include them; see docs/operations.md.
ARG SNAP_INSTALLER_URL=""
ARG SEN2COR_URL=""
RUN if [ -n "$SNAP_INSTALLER_URL" ]; then \
      curl -fsSL "$SNAP_INSTALLER_URL" -o /tmp/snap.sh && sh /tmp/snap.sh -q -dir /opt/snap && \
      ln -s /opt/snap/bin/gpt /usr/local/bin/gpt && rm /tmp/snap.sh; fi && \
    if [ -n "$SEN2COR_URL" ]; then \
      curl -fsSL "$SEN2COR_URL" -o /tmp/sen2cor.run && sh /tmp/sen2cor.run --target /opt/sen2cor && \
      ln -s /opt/sen2cor/bin/L2A_Process /usr/local/bin/L2A_Process && rm /tmp/sen2cor.run; fi
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/project/requirements.txt
RUN ${PIP_INSTALL} -r /opt/airflow/project/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/project/
COPY --chown=airflow:0 src /opt/airflow/project/src
COPY --chown=airflow:0 include /opt/airflow/project/include
RUN ${PIP_INSTALL} --no-deps -e /opt/airflow/project
