"""Fill the index from PostgreSQL: everything at start-up, one company on each change."""

from __future__ import annotations

import asyncpg
import orjson

from services.matcher.index import SubscriptionIndex
from shared.deadletter import SetAsideOnce
from shared.messages import PINNED_SQL
from shared.routes import Route, route_from_row

# Each version (id, updated_at) of an unusable subscription is reported once, not at every reload.
_set_aside_once = SetAsideOnce()

# Only subscriptions that can receive anything: active, with an active configuration.
ROUTES_SQL = f"""
SELECT s.id, s.company_id, s.topic, s.event_types, s.delivery_configuration_id, s.matching_criteria,
       s.start_at, s.end_at, s.updated_at, c.mode, {PINNED_SQL} AS pinned
FROM subscriptions s JOIN delivery_configurations c ON c.id = s.delivery_configuration_id
WHERE s.active AND c.active
"""


async def load_all_routes(pool: asyncpg.Pool, index: SubscriptionIndex) -> None:
    by_company: dict[str, list[Route]] = {}
    for row in await pool.fetch(ROUTES_SQL):
        if route := await _route_or_set_aside(pool, row):
            by_company.setdefault(row["company_id"], []).append(route)
    index.replace_all_routes(by_company)


async def load_company_routes(pool: asyncpg.Pool, index: SubscriptionIndex, company_id: str) -> None:
    rows = await pool.fetch(ROUTES_SQL + " AND s.company_id = $1", company_id)
    index.replace_company_routes(company_id, [route for row in rows if (route := await _route_or_set_aside(pool, row))])


async def _route_or_set_aside(pool: asyncpg.Pool, row) -> Route | None:
    """A stored subscription the matcher cannot use (a pattern over today's limits, a date out
    of range) is left out and reported once, instead of stopping the matcher at every start."""
    try:
        return route_from_row(row)
    except Exception as exc:
        await _set_aside_once((row["id"], row["updated_at"]), pool, service="matcher",
                              source=f"subscription:{row['id']}", company_id=row["company_id"],
                              payload=orjson.dumps(dict(row), default=str),
                              reason=f"subscription cannot be matched: {type(exc).__name__}: {exc}")
        return None


async def companies_changed_since(pool: asyncpg.Pool, since) -> list[str]:
    rows = await pool.fetch(
        "SELECT company_id FROM subscriptions WHERE updated_at > $1 "
        "UNION SELECT company_id FROM delivery_configurations WHERE updated_at > $1", since)
    return [row[0] for row in rows]


async def load_all_numbers(pool: asyncpg.Pool, index: SubscriptionIndex) -> None:
    async with pool.acquire() as connection, connection.transaction():
        numbers: dict[str, list[str]] = {}
        async for row in connection.cursor(
            "SELECT company_id, number FROM monitored_numbers ORDER BY company_id", prefetch=20_000
        ):
            numbers.setdefault(row[0], []).append(row[1])
            if len(numbers) > 1:  # one company finished: index it and free its rows
                finished = next(iter(numbers))
                index.replace_company_numbers(finished, numbers.pop(finished))
        for company_id, company_numbers in numbers.items():
            index.replace_company_numbers(company_id, company_numbers)


async def load_company_numbers(pool: asyncpg.Pool, index: SubscriptionIndex, company_id: str) -> None:
    rows = await pool.fetch("SELECT number FROM monitored_numbers WHERE company_id = $1", company_id)
    index.replace_company_numbers(company_id, (row[0] for row in rows))
