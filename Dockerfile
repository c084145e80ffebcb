# awops image: the daemon (`awops run`) and `awops run-once` for CronJobs.
#   docker build -t awops:0.1.0 .
# Debian 13 (trixie) ships PostgreSQL 17's client: pg_dump/pg_restore 17 dump and restore
# servers from 9.2 to 17, and pg_dump must be at least the server's major version.
# For a PostgreSQL 18 server, install postgresql-client-18 from apt.postgresql.org instead.
ARG PYTHON_IMAGE=python:3.12-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY awops ./awops
RUN python -m venv /opt/awops \
 && /opt/awops/bin/pip install --upgrade pip \
 && /opt/awops/bin/pip install . \
 && /opt/awops/bin/python -m compileall -q /opt/awops

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-17 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 awops \
 && useradd --system --uid 10001 --gid awops --home-dir /var/lib/awops --no-create-home \
      --shell /usr/sbin/nologin awops \
 && install -d -o awops -g awops -m 0700 /var/lib/awops /var/backups/awops
COPY --from=build /opt/awops /opt/awops
ENV PATH=/opt/awops/bin:/usr/lib/postgresql/17/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AWOPS_LOG_FORMAT=json \
    AWOPS_METRICS_ADDR=0.0.0.0:9647
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/awops
EXPOSE 9647
# Kubernetes probes /healthz and /readyz itself; no HEALTHCHECK (it needs curl in the image).
ENTRYPOINT ["awops"]
CMD ["run"]
