# cbmflow-redis: Redis from Debian bookworm's package (Celery broker). No persistence: the broker
# only holds queued task messages, which the scheduler re-queues after a restart.
ARG BASE_IMAGE=cbmflow-debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
