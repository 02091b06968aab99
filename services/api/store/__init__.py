"""The api's query and service layer: one module per resource, between the routes (which only
speak HTTP: parse, call this layer, present) and the database.

The rule that keeps tenants apart: every function that reads or changes a company's rows takes
the company as a required argument, and a finder answers NotFound alike for a row that does not
exist and for another company's row (Svix's `secure_find(org_id, id)`). Operator data (admin,
topics, dead_letters) has no company. tests/test_api_store.py checks the rule for every function
here that takes a session, so a new one cannot forget the company. Functions stage their
changes in the caller's session; the route announces the change (`changes.announce`) and
commits, so a change and its notification commit together."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import NotFound

Row = TypeVar("Row")


async def find_owned(session: AsyncSession, model: type[Row], company_id: str, row_id: str, what: str,
                     lock: bool = False) -> Row:
    """The company's `model` row with this id; NotFound (naming `what`) if there is none or it is
    another company's. `lock` holds the row (FOR UPDATE) until the transaction ends, for a change
    computed from what it holds."""
    row = await session.get(model, row_id, with_for_update=lock or None)
    if row is None or row.company_id != company_id:
        raise NotFound(f"{what} {row_id[:200]} does not exist")
    return row


async def fetch_page(session: AsyncSession, query: Select, limit: int) -> tuple[list, bool]:
    """Up to `limit` rows of an ordered query, and whether more follow (one extra row is read)."""
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def saved(session: AsyncSession, row: Row) -> Row:
    """The row (new or changed) written and read back, with what the database fills in
    (`created_at`, `updated_at`), so it can be presented after the commit without another query."""
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row
