# The front door. `make run` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 8000

.PHONY: run test lint bench worker beat web install install-dev migrate seed e2e fuzz audit bandit security clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(STAMP) $(DEV_STAMP)

install: $(STAMP)
install-dev: $(DEV_STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "Aftercare: http://127.0.0.1:$(PORT)/admin/  (logins printed above by seed_demo)"
	PORT=$(PORT) $(VENV)/bin/honcho start

web: install
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

worker: install
	$(VENV)/bin/celery -A clinic worker --loglevel=INFO --concurrency=2

beat: install
	$(VENV)/bin/celery -A clinic beat --loglevel=INFO

test: install-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

e2e: install-dev
	$(VENV)/bin/pytest tests/e2e -m e2e $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

# Benchmarks (tests/perf), about 20 minutes at full size; on PostgreSQL and Redis when DATABASE_URL and
# CELERY_BROKER_URL point at them. BENCH_ARGS="--scale 0.1" for a quick run, BENCH_ARGS=export for one.
# Schemathesis against /api/schema/ on a throwaway database and server (tests/fuzz/run_schemathesis.py).
fuzz: install-dev
	$(PY) -m tests.fuzz.run_schemathesis

# Known vulnerabilities in requirements.txt; says so loudly when no vulnerability service is reachable.
audit: install-dev
	$(PY) .ci/audit_dependencies.py

# Static analysis: no medium or high findings (each "# nosec" says why on the line above it).
bandit: install-dev
	$(VENV)/bin/bandit -q -r clinic protocols patients -x '*/migrations/*' --severity-level medium

security: audit bandit fuzz

bench: install-dev
	$(VENV)/bin/python -m tests.perf $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles
