# Entry points for humans and CI. `make test` is THE test command (CI runs it via .ci/run): the unit
# tier first (tests/unit: no store, seconds), then the store tier on the real stores.
# The local stack (PostgreSQL, Redis, FerretDB on 127.0.0.1) is managed by ops/stack.sh.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY := .venv/bin/python
PYTEST_ARGS ?=
# A tier that runs past its limit is hung (the unit tier takes seconds, a store tier minutes): it
# gets SIGINT, as on Ctrl-C, so pytest reports what failed before CI's own limit would cut the whole
# run off; SIGKILL a minute later if that does not end it. --foreground keeps pytest in the
# terminal's process group, so Ctrl-C and a debugger prompt still reach it.
UNIT_TIER_LIMIT_S ?= 600
STORE_TIER_LIMIT_S ?= 1800
WITHIN = timeout --foreground -s INT -k 60 $(1) $(PY) -m pytest -q
# A tier's exit, said in words: pytest's 5 (it collected no tests) is a failure here, not a pass;
# timeout's 124 when the limit sent SIGINT, 137 when pytest was killed (a minute after that, or by
# something else).
TIER_EXIT = if [ $$rc -eq 5 ]; then echo "$(1): pytest collected no tests -> failing"; \
	elif [ $$rc -eq 124 ]; then echo "$(1): ran past $(2) s -> failing"; \
	elif [ $$rc -eq 137 ]; then echo "$(1): killed (past $(2) s and SIGINT, or out of memory)"; fi; \
	exit $$rc

.PHONY: help setup up down status test test-unit test-cluster cluster-up cluster-down run bench lint

help:
	@echo "make setup   install OS packages, FerretDB, .venv (ops/stack.sh install)"
	@echo "make up      start PostgreSQL, Redis, FerretDB and wait until they answer"
	@echo "make down    stop them"
	@echo "make status  show what is running"
	@echo "make test    the unit tier, then up + the store tier (extra args for the store tier: make test PYTEST_ARGS='-k foo -x')"
	@echo "make test-unit  the unit tier only: tests/unit, no store needed, a few seconds"
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

# The unit tier needs no store and no setting: it runs before the stack is even started.
test-unit:
	@rc=0; $(call WITHIN,$(UNIT_TIER_LIMIT_S)) tests/unit -m unit || rc=$$?; \
	$(call TIER_EXIT,make test-unit,$(UNIT_TIER_LIMIT_S))

test: test-unit up
	@. ops/env.sh; rc=0; $(call WITHIN,$(STORE_TIER_LIMIT_S)) tests --ignore=tests/unit $(PYTEST_ARGS) || rc=$$?; \
	$(call TIER_EXIT,make test,$(STORE_TIER_LIMIT_S))

# The same store tier on Redis Cluster (ports 7000-7005), including the failover test that only runs
# there; the unit tier does not depend on the store, so `make test` runs it once.
test-cluster: up cluster-up
	@. ops/env.sh; rc=0; TEST_REDIS_CLUSTER=1 TEST_REDIS_URL=redis://127.0.0.1:$${CLUSTER_BASE_PORT:-7000}/0 \
	$(call WITHIN,$(STORE_TIER_LIMIT_S)) tests --ignore=tests/unit $(PYTEST_ARGS) || rc=$$?; \
	$(call TIER_EXIT,make test-cluster,$(STORE_TIER_LIMIT_S))

cluster-up:
	bash ops/stack.sh cluster-up

cluster-down:
	bash ops/stack.sh cluster-down

run:
	bash ops/run.sh

# wrk (closed-loop peak) and pgbench (the SQL baseline) come from Debian; Go builds the
# fixed-rate driver; `up` installs valgrind (the counted engine row). BENCH_ARGS='--quick' for a
# shorter run.
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
