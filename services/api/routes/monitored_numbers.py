"""Monitored numbers: the phone numbers whose NIS-Events (proactive feed) a company receives."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import text

from services.api.changes import announce
from services.api.deps import CompanyDep, SessionDep
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import MonitoredNumbers

router = APIRouter(prefix="/v1/monitored-numbers", tags=["monitored numbers"])


class AddResult(BaseModel):
    added: int
    already_present: int


class RemoveResult(BaseModel):
    removed: int
    not_present: int


class NumberPage(BaseModel):
    data: list[str]
    next_cursor: str | None


@router.post("", response_model=AddResult, summary="Start monitoring numbers (bulk)",
             description="Up to 200,000 E.164 numbers per request; numbers already monitored are counted, "
                         "not duplicated.")
async def add(body: MonitoredNumbers, request: Request, session: SessionDep, caller: CompanyDep):
    numbers = sorted(set(body.numbers))
    result = await session.execute(
        text(
            "INSERT INTO monitored_numbers (company_id, number, created_at) "
            "SELECT :company, n, now() FROM unnest(CAST(:numbers AS text[])) AS n ON CONFLICT DO NOTHING"
        ),
        {"company": caller.company_id, "numbers": numbers},
    )
    announce(request, session, "monitored_numbers", caller.company_id)
    await session.commit()
    return AddResult(added=result.rowcount, already_present=len(body.numbers) - result.rowcount)


@router.delete("", response_model=RemoveResult, summary="Stop monitoring numbers (bulk)")
async def remove(body: MonitoredNumbers, request: Request, session: SessionDep, caller: CompanyDep):
    """Numbers not monitored are counted in `not_present`. Takes effect within 2 seconds."""
    numbers = sorted(set(body.numbers))
    result = await session.execute(
        text("DELETE FROM monitored_numbers WHERE company_id = :company AND number = ANY(CAST(:numbers AS text[]))"),
        {"company": caller.company_id, "numbers": numbers},
    )
    announce(request, session, "monitored_numbers", caller.company_id)
    await session.commit()
    return RemoveResult(removed=result.rowcount, not_present=len(numbers) - result.rowcount)


@router.get("", response_model=NumberPage, summary="List monitored numbers")
async def list_numbers(session: SessionDep, caller: CompanyDep, limit: int = Query(1000, ge=1, le=10_000),
                       cursor: str | None = None):
    """Monitored numbers in ascending order, paginated with `cursor`."""
    after = decode_cursor(cursor, "monitored-numbers")[0] if cursor else ""
    rows = (await session.execute(
        text("SELECT number FROM monitored_numbers WHERE company_id = :company AND number > :after "
             "ORDER BY number LIMIT :limit"),
        {"company": caller.company_id, "after": after, "limit": limit + 1},
    )).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return NumberPage(data=rows, next_cursor=encode_cursor("monitored-numbers", rows[-1]) if more else None)
