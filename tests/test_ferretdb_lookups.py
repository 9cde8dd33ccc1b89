"""FerretDB's lookups by `_id` are served by an index (ops/ferretdb_id_index.sql).

FerretDB 1.24 keeps a collection in a PostgreSQL table and finds a document by `_id` with
`_jsonb->'_id' @> '"<id>"'`, which its own btree index cannot serve. The local stack adds a GIN
index to every such table as FerretDB creates it; without it, each `update_one` by `_id` (one per
product the inventory writer mirrors) read the whole collection.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from stores.mongo import MongoDatabase
from stores.settings import Settings

FERRETDB_DATABASE = "ferretdb"  # where ops/stack.sh runs FerretDB's PostgreSQL backend


@pytest.fixture
async def ferretdb_pg(
    settings: Settings, mongo: MongoDatabase
) -> AsyncIterator[asyncpg.Connection]:
    """FerretDB's PostgreSQL database, on the tests' PostgreSQL server as ops/stack.sh runs it."""
    info = await mongo.client.admin.command("buildInfo")
    if "ferretdbVersion" not in info:
        pytest.skip("MONGO_URL is not FerretDB: a real MongoDB needs no such index")
    dsn = urlsplit(settings.postgres_dsn)
    conn = await asyncpg.connect(urlunsplit(dsn._replace(path=f"/{FERRETDB_DATABASE}")))
    yield conn
    await conn.close()


async def _table_of(conn: asyncpg.Connection, database: str, collection: str) -> str:
    table = await conn.fetchval(
        f"SELECT _jsonb->>'table' FROM \"{database}\"._ferretdb_database_metadata"
        " WHERE _jsonb->>'_id' = $1",
        collection,
    )
    assert table, f"FerretDB has no table for {database}.{collection}"
    return f'"{database}"."{table}"'


async def test_a_new_collection_finds_documents_by_id_through_an_index(
    mongo: MongoDatabase, ferretdb_pg: asyncpg.Connection
) -> None:
    collection = mongo[f"lookups_{uuid.uuid4().hex[:12]}"]
    try:
        await collection.insert_many([{"_id": f"sku-{i}", "units": i} for i in range(200)])
        table = await _table_of(ferretdb_pg, mongo.name, collection.name)
        async with ferretdb_pg.transaction():
            # Could the planner avoid reading the whole table? With sequential scans priced out,
            # it still picks one when no index serves the operator.
            await ferretdb_pg.execute("SET LOCAL enable_seqscan = off")
            # FerretDB's own form of the lookup: the key is a parameter too.
            rows = await ferretdb_pg.fetch(
                f"EXPLAIN SELECT _jsonb FROM {table} WHERE _jsonb->$1::text @> $2::jsonb",
                "_id",
                '"sku-7"',
            )
        plan = "\n".join(row[0] for row in rows)
        assert "Bitmap Index Scan" in plan, plan
        options = await ferretdb_pg.fetchval(
            "SELECT i.reloptions FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_am m ON m.oid = i.relam WHERE x.indrelid = $1::regclass AND m.amname = 'gin'",
            table,
        )
        assert options == ["fastupdate=off"]
        # The documents are still FerretDB's to read and change, through the index.
        await collection.update_one(
            {"_id": "sku-7", "units": {"$lt": 100}}, {"$set": {"units": 100}}
        )
        assert await collection.find_one({"_id": "sku-7"}) == {"_id": "sku-7", "units": 100}
    finally:
        await collection.drop()
