# The two commands: `make run` serves on SMARTPIP_BIND; `make test` lints and tests.
# The virtualenv is created on first use and refreshed when pyproject.toml or the
# constraints (the lock of exact versions) change.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: run test lint format bench fuzz venv lock clean cloudflare-ips secrets

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=24'
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Serve with working defaults on this machine (creates and migrates the database).
run: venv
	exec $(VENV)/bin/smartpip serve

## ruff, mypy (strict), the import rules (import-linter), then pytest.
# Two pytest workers (pytest-xdist): the tests wait on sockets, servers and subprocesses much
# of the time, so two share this 2-core machine well (about 4.5 minutes instead of 7.5). Each
# worker has its own database and Redis prefixes. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

test: lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## The contract fuzz run for SMARTPIP_FUZZ_SECONDS (600) of random data; report in fuzz-report.txt.
fuzz: venv
	SMARTPIP_FUZZ=long SMARTPIP_FUZZ_REPORT=fuzz-report.txt $(VENV)/bin/pytest tests/contract/test_fuzz.py
	grep -E '^(Seed|Test cases|  [0-9]+ generated)' fuzz-report.txt

## Throughput and latency of each endpoint as a ratio of a bare ASGI app (needs wrk).
bench: venv
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m bench.run

## Write every secret compose.yaml reads into secrets/ (kept when present; docs/deploy.md).
secrets:
	deploy/make-secrets

## Refresh nginx/cloudflare-ips.conf from Cloudflare's published ranges (commit the result).
cloudflare-ips:
	nginx/update-cloudflare-ips

## Re-pin constraints.txt from what pyproject.toml resolves to today.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip && .lock-venv/bin/pip install --quiet '.[dev]'
	.lock-venv/bin/pip freeze --exclude smartpip > constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
