# syntax=docker/dockerfile:1
# Zero EMQX: one image for the manager and the ExHook server.
#   zero-emqx serve        both on the embedded store (the default command)
#   zero-emqx-manager      the manager alone (Kubernetes: ZERO_EMQX_STORE=kubernetes)
#   zero-emqx-exhook       the ExHook server alone
# Build: docker build -t zero-emqx:dev .

# --- builder: wheels for the project and every dependency ---------------------------
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the package is built from (see .dockerignore); exhook/wire is generated
# and committed, so no protoc is needed here.
COPY pyproject.toml README.md ./
COPY tenants ./tenants
COPY manager ./manager
COPY exhook ./exhook
COPY zero_emqx ./zero_emqx
RUN python -m pip wheel --wheel-dir /wheels .

# --- final: the runtime only, no compilers, no build tools --------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    ZERO_EMQX_DATA_DIR=/data
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels zero-emqx \
 && python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --gid 10001 zero \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin zero \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data
# /data: the embedded store (ZERO_EMQX_STORE=local). A fresh named volume mounted here
# takes this directory's owner, so uid 10001 can write to it.
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
# 8080 manager HTTP; 9000 ExHook gRPC (h2c); 9001 ExHook /healthz /readyz /metrics
EXPOSE 8080 9000 9001
CMD ["zero-emqx", "serve"]
