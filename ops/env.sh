# shellcheck shell=bash
# Connection defaults for the local stack started by ops/stack.sh. Source it:
#   . ops/env.sh
# A variable already set in the environment wins (so CI or a developer can point elsewhere).
# Ports follow the same overrides as ops/stack.sh (PG_PORT, REDIS_PORT, MONGO_PORT).

: "${REDIS_URL:=redis://127.0.0.1:${REDIS_PORT:-6379}/0}"
: "${POSTGRES_DSN:=postgresql://fulfillment:fulfillment@127.0.0.1:${PG_PORT:-5432}/fulfillment}"
# The test database (same schema, truncated by `ops/stack.sh reset-test`).
: "${POSTGRES_TEST_DSN:=postgresql://fulfillment:fulfillment@127.0.0.1:${PG_PORT:-5432}/fulfillment_test}"
: "${MONGO_URL:=mongodb://127.0.0.1:${MONGO_PORT:-27017}/}"
: "${MONGO_DB:=fulfillment}"

export REDIS_URL POSTGRES_DSN POSTGRES_TEST_DSN MONGO_URL MONGO_DB
