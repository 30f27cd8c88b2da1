# cbmflow-s3: an S3 endpoint from PyPI (moto in server mode, the version pinned in
# requirements-dev.txt) where no MinIO image can be pulled. Objects live in memory: a restart
# loses them (fine for work files and tests; use MinIO or the DIAS object store for data).
ARG PYTHON_IMAGE=cbmflow-python:bookworm
FROM ${PYTHON_IMAGE}
COPY requirements.txt requirements-dev.txt /tmp/req/
RUN uv pip install --no-cache -c /tmp/req/requirements-dev.txt -c /tmp/req/requirements.txt "moto[server]"
EXPOSE 9000
ENTRYPOINT ["/usr/bin/dumb-init", "--"]
CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
