"""Dead letters (written by the workers, see shared/deadletter.py): the operator's listing, and
the claim that lets a Kafka message be requeued once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from shared.errors import NotFound

COLUMNS = "id, service, source, company_id, reason, payload, created_at, requeued_at"


async def page(session: AsyncSession, service: str | None, company_id: str | None,
               after: tuple[datetime, str] | None, limit: int) -> tuple[list, bool]:
    """Newest first, after the `(created_at, id)` of the previous page's last row; and whether
    more follow. Unlike company data, the company is an optional filter here: operators see all."""
    conditions, params = ["true"], {"limit": limit + 1}
    if service:
        conditions.append("service = :service")
        params["service"] = service
    if company_id:
        conditions.append("company_id = :company_id")
        params["company_id"] = company_id
    if after:
        params["after_at"], params["after_id"] = after
        conditions.append("(created_at, id) < (:after_at, :after_id)")
    rows = (await session.execute(text(
        f"SELECT {COLUMNS} FROM dead_letters WHERE {' AND '.join(conditions)} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"), params)).all()
    return rows[:limit], len(rows) > limit


async def find(session: AsyncSession, dead_letter_id: str):
    """The row with its Kafka key."""
    row = (await session.execute(text(f"SELECT {COLUMNS}, key FROM dead_letters WHERE id = :id"),
                                 {"id": dead_letter_id})).first()
    if row is None:
        raise NotFound(f"dead letter {dead_letter_id} does not exist")
    return row


async def claim(session: AsyncSession, dead_letter_id: str):
    """Mark it requeued, unless it already is (then None): two calls cannot both requeue it."""
    row = (await session.execute(text(f"UPDATE dead_letters SET requeued_at = now() "
                                      f"WHERE id = :id AND requeued_at IS NULL RETURNING {COLUMNS}"),
                                 {"id": dead_letter_id})).first()
    if row is not None:
        audit.record(session, "dead_letter.requeue", "dead_letter", dead_letter_id,
                     after={"service": row.service, "source": row.source}, company_id=None)
    return row


async def release(session: AsyncSession, dead_letter_id: str) -> None:
    """Undo a claim whose message could not be put back."""
    await session.execute(text("UPDATE dead_letters SET requeued_at = NULL WHERE id = :id"), {"id": dead_letter_id})
    audit.record(session, "dead_letter.requeue_failed", "dead_letter", dead_letter_id, company_id=None)
