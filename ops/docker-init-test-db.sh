#!/usr/bin/env bash
# Run once by the postgres image on first start (mounted into /docker-entrypoint-initdb.d after
# 10-schema.sql): create the test database with the same schema as `fulfillment`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c 'CREATE DATABASE fulfillment_test OWNER fulfillment'
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname fulfillment_test \
    -f /docker-entrypoint-initdb.d/10-schema.sql
