# The api image: the smartpip package and its pinned dependencies, run as an unprivileged user.
# bookworm pinned: its postgresql-client-15 matches compose's postgres:15 (backups run pg_dump
# and pg_restore, which must not be older than the server; docs/backups.md).
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY smartpip ./smartpip
COPY supervisors ./supervisors
COPY tasks ./tasks
COPY store ./store
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 smartpip
USER smartpip
EXPOSE 8080
ENV SMARTPIP_BIND=0.0.0.0:8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
STOPSIGNAL SIGTERM
CMD ["smartpip", "serve"]
