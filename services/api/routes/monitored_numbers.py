"""Monitored numbers: the phone numbers whose NIS-Events (proactive feed) a company receives."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.api.changes import announce
from services.api.deps import Reader, SessionDep, Writer
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import MonitoredNumbers
from services.api.store import monitored_numbers as store

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
async def add(body: MonitoredNumbers, request: Request, session: SessionDep, caller: Writer):
    added = await store.add(session, caller.company_id, set(body.numbers))
    announce(request, session, "monitored_numbers", caller.company_id)
    await session.commit()
    # A number given twice in the request counts once as added and once as already present.
    return AddResult(added=added, already_present=len(body.numbers) - added)


@router.delete("", response_model=RemoveResult, summary="Stop monitoring numbers (bulk)")
async def remove(body: MonitoredNumbers, request: Request, session: SessionDep, caller: Writer):
    """Numbers not monitored are counted in `not_present`. Takes effect within 2 seconds."""
    numbers = set(body.numbers)
    removed = await store.remove(session, caller.company_id, numbers)
    announce(request, session, "monitored_numbers", caller.company_id)
    await session.commit()
    return RemoveResult(removed=removed, not_present=len(numbers) - removed)


@router.get("", response_model=NumberPage, summary="List monitored numbers")
async def list_numbers(session: SessionDep, caller: Reader, limit: int = Query(1000, ge=1, le=10_000),
                       cursor: str | None = None):
    """Monitored numbers in ascending order, paginated with `cursor`."""
    after = decode_cursor(cursor, "monitored-numbers")[0] if cursor else ""
    numbers, more = await store.page(session, caller.company_id, after, limit)
    return NumberPage(data=numbers, next_cursor=encode_cursor("monitored-numbers", numbers[-1]) if more else None)
