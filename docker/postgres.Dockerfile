# cbmflow-postgres: PostgreSQL 15 + PostGIS 3 from Debian bookworm's packages, for the results DB and
# Airflow's metadata DB. Environment as the official postgres image: POSTGRES_USER (superuser),
# POSTGRES_PASSWORD, POSTGRES_DB; data in /var/lib/postgresql/data (a volume).
ARG BASE_IMAGE=cbmflow-debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
RUN apt-get update && apt-get install -y --no-install-recommends \
      postgresql-15 postgresql-15-postgis-3 postgresql-client-15 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 755 /usr/local/bin/postgres-entrypoint
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
