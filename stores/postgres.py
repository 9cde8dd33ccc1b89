"""The PostgreSQL connection pool (asyncpg) and the schema it expects (`ops/schema.sql`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import asyncpg

from stores.settings import Settings

SCHEMA_SQL: Final = Path(__file__).resolve().parent.parent / "ops" / "schema.sql"

# The database restarting, refusing connections, or a lost connection: worth retrying.
TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash recovery, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
)

# The row itself cannot be stored: a value PostgreSQL refuses (class 22: a NUL character in text,
# a number out of range, invalid input asyncpg cannot encode) or a constraint it breaks (class
# 23). Retrying cannot help: the writers send such an entry to the dead letters at once.
PERMANENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)


async def connect_postgres(settings: Settings, *, max_size: int = 8) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=max_size)
    assert pool is not None
    return pool


async def apply_schema(pool: asyncpg.Pool) -> None:
    """Idempotent: every statement is CREATE ... IF NOT EXISTS."""
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA_SQL.read_text())
