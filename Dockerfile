# syntax=docker/dockerfile:1
# The one Filas image: `docker run IMAGE <command...>` runs any processor by name, e.g.
#   docker run IMAGE sink run        docker run IMAGE radius serve      docker run IMAGE ixc poll
# (deploy/base/processors/workloads.yaml and compose.yaml run it exactly this way).
#
# Base pinned by full version tag; CI that builds release images pins the digest too:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   ->  PYTHON_IMAGE=...@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv with Filas and its locked dependencies -------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only for a dependency without a wheel for this platform; never in the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/filas
WORKDIR /src
# Dependencies first (cached while only the code changes), then the code itself.
COPY pyproject.toml README.md ./
RUN mkdir -p filas schemas producers consumers streams \
 && touch filas/__init__.py schemas/__init__.py producers/__init__.py consumers/__init__.py \
          streams/__init__.py \
 && /opt/filas/bin/pip install . \
 && rm -rf /src/*
COPY pyproject.toml README.md ./
COPY filas ./filas
COPY schemas ./schemas
COPY producers ./producers
COPY consumers ./consumers
COPY streams ./streams
RUN /opt/filas/bin/pip install --no-deps --force-reinstall . \
 && /opt/filas/bin/filas --help >/dev/null

# --- runtime: the virtualenv, a non-root user, nothing else -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# tini reaps children and forwards SIGTERM, so consumers commit and leave their group on stop.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 filas \
 && useradd --system --uid 10001 --gid filas --home-dir /var/lib/filas --create-home \
            --shell /usr/sbin/nologin filas
COPY --from=build /opt/filas /opt/filas
ENV PATH=/opt/filas/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FILAS_METRICS__HOST=0.0.0.0 \
    FILAS_METRICS__PORT=9400
WORKDIR /var/lib/filas
USER 10001:10001
# 9400: /metrics (probes, Prometheus); 1812-1813/udp: the RADIUS gateway.
EXPOSE 9400 1812/udp 1813/udp
ENTRYPOINT ["tini", "--", "filas"]
CMD ["--help"]
