"""Monitored numbers: the phone numbers whose NIS-Events (proactive feed) a company receives.
Up to 200,000 numbers per call, so adding and removing are one statement over an array each."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.store import fetch_page
from shared.models import MonitoredNumber

ADD = text("INSERT INTO monitored_numbers (company_id, number, created_at) "
           "SELECT :company, n, now() FROM unnest(CAST(:numbers AS text[])) AS n ON CONFLICT DO NOTHING")
REMOVE = text("DELETE FROM monitored_numbers WHERE company_id = :company AND number = ANY(CAST(:numbers AS text[]))")


async def add(session: AsyncSession, company_id: str, numbers: set[str]) -> int:
    """How many of the numbers were not monitored yet (and now are)."""
    result = await session.execute(ADD, {"company": company_id, "numbers": sorted(numbers)})
    # Counts only: the numbers themselves are the company's customers' data.
    audit.record(session, "monitored_numbers.add", "monitored_numbers", None,
                 after={"requested": len(numbers), "added": result.rowcount})
    return result.rowcount


async def remove(session: AsyncSession, company_id: str, numbers: set[str]) -> int:
    """How many of the numbers were monitored (and no longer are)."""
    result = await session.execute(REMOVE, {"company": company_id, "numbers": sorted(numbers)})
    audit.record(session, "monitored_numbers.remove", "monitored_numbers", None,
                 after={"requested": len(numbers), "removed": result.rowcount})
    return result.rowcount


async def page(session: AsyncSession, company_id: str, after: str, limit: int) -> tuple[list[str], bool]:
    """The company's numbers after `after`, in ascending order, and whether more follow."""
    query = (select(MonitoredNumber.number)
             .where(MonitoredNumber.company_id == company_id, MonitoredNumber.number > after)
             .order_by(MonitoredNumber.number))
    return await fetch_page(session, query, limit)
