# Entry points for humans and CI. `make test` is THE test command (CI runs it via .ci/run).
# The local stack (PostgreSQL, Redis, FerretDB on 127.0.0.1) is managed by ops/stack.sh.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help setup up down status test test-cluster cluster-up cluster-down run bench lint

help:
	@echo "make setup   install OS packages, FerretDB, .venv (ops/stack.sh install)"
	@echo "make up      start PostgreSQL, Redis, FerretDB and wait until they answer"
	@echo "make down    stop them"
	@echo "make status  show what is running"
	@echo "make test    up + pytest (extra args: make test PYTEST_ARGS='-k foo -x')"
	@echo "make test-cluster  the same tests on a local Redis Cluster (3 masters + 3 replicas), plus failover"
	@echo "make run     up + API + writers + demo (ops/run.sh)"
	@echo "make bench   up + load benchmark (loadtest.bench)"
	@echo "make lint    ruff check, ruff format --check, mypy --strict, promtool check (alerts, prometheus.yml)"

setup:
	bash ops/stack.sh install

up:
	bash ops/stack.sh up

down:
	bash ops/stack.sh down

status:
	bash ops/stack.sh status

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: up
	@. ops/env.sh; rc=0; $(PY) -m pytest -q tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests -> failing"; fi; \
	exit $$rc

# The same suite on Redis Cluster (ports 7000-7005), including the failover test that only runs there.
test-cluster: up cluster-up
	@. ops/env.sh; rc=0; TEST_REDIS_CLUSTER=1 TEST_REDIS_URL=redis://127.0.0.1:$${CLUSTER_BASE_PORT:-7000}/0 \
	$(PY) -m pytest -q tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-cluster: pytest collected no tests -> failing"; fi; \
	exit $$rc

cluster-up:
	bash ops/stack.sh cluster-up

cluster-down:
	bash ops/stack.sh cluster-down

run:
	bash ops/run.sh

# wrk (closed-loop peak) and pgbench (the SQL baseline) come from Debian; Go builds the
# fixed-rate driver. BENCH_ARGS='--quick' for a shorter run.
bench: up
	@command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }
	. ops/env.sh; $(PY) -m loadtest.bench $(BENCH_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy engine geo api writers stores notify telemetry loadtest
	promtool check rules ops/alerts.yml
	promtool check config ops/prometheus.yml
