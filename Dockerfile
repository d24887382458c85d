# syntax=docker/dockerfile:1
# The api image: the smartpip package and its pinned dependencies, run as an unprivileged user.
# Multi-arch: python's official image is published for amd64 and arm64 (Graviton); nothing
# here is architecture-specific (`docker buildx build --platform linux/arm64,linux/amd64 .`).
# bookworm pinned: its postgresql-client-15 matches compose's postgres:15 (backups run pg_dump
# and pg_restore, which must not be older than the server; docs/backups.md).
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home smartpip
WORKDIR /app
# Dependencies first, in their own layer: a change to the code does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY smartpip ./smartpip
COPY supervisors ./supervisors
COPY tasks ./tasks
COPY store ./store
RUN pip install --no-deps -c constraints.txt .
USER smartpip
EXPOSE 8080
# The commit in smartpip_build_info (docs/monitoring.md):
# docker compose build --build-arg SMARTPIP_BUILD_COMMIT=$(git rev-parse --short HEAD)
ARG SMARTPIP_BUILD_COMMIT=unknown
ENV SMARTPIP_BIND=0.0.0.0:8080 SMARTPIP_BUILD_COMMIT=$SMARTPIP_BUILD_COMMIT
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
STOPSIGNAL SIGTERM
CMD ["smartpip", "serve"]
