"""Operator API: what the workers set aside (see shared/deadletter.py), and requeueing it after
a fix. Only messages that came from Kafka can be requeued: they go back to their topic with
their original key; a set-aside row is mended where it lives (its configuration, say)."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.api.deps import OperatorDep, SessionDep
from services.api.pagination import decode_cursor, encode_cursor
from services.api.store import dead_letters as store
from shared.deadletter import KAFKA_SOURCE
from shared.errors import Conflict

router = APIRouter(prefix="/v1/admin/dead-letters", tags=["operator"])


class DeadLetterPublic(BaseModel):
    id: str
    service: str
    source: str
    company_id: str | None
    reason: str
    payload_base64: str
    payload_text: str | None  # the payload as text when it is valid UTF-8
    created_at: datetime
    requeued_at: datetime | None


class DeadLetterPage(BaseModel):
    data: list[DeadLetterPublic]
    next_cursor: str | None


def present(row) -> DeadLetterPublic:
    payload = bytes(row.payload)
    try:
        as_text = payload.decode("utf-8")
    except UnicodeDecodeError:
        as_text = None
    return DeadLetterPublic(id=row.id, service=row.service, source=row.source, company_id=row.company_id,
                            reason=row.reason, payload_base64=base64.b64encode(payload).decode(),
                            payload_text=as_text, created_at=row.created_at, requeued_at=row.requeued_at)


@router.get("", response_model=DeadLetterPage, summary="List dead letters, newest first")
async def list_dead_letters(session: SessionDep, _: OperatorDep,
                            service: str | None = Query(None, max_length=100, description="matcher, dispatcher..."),
                            company_id: str | None = Query(None, max_length=200),
                            limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=500)):
    """Messages and rows a worker set aside, with the reason and the original payload."""
    after = None
    if cursor:
        created_at, dead_letter_id = decode_cursor(cursor, "dead-letters")
        after = (datetime.fromisoformat(created_at), dead_letter_id)
    rows, more = await store.page(session, service, company_id, after, limit)
    next_cursor = encode_cursor("dead-letters", rows[-1].created_at.isoformat(), rows[-1].id) if more else None
    return DeadLetterPage(data=[present(row) for row in rows], next_cursor=next_cursor)


@router.get("/{dead_letter_id}", response_model=DeadLetterPublic, summary="Get a dead letter")
async def get_dead_letter(dead_letter_id: str, session: SessionDep, _: OperatorDep):
    """One dead letter with its payload."""
    return present(await store.find(session, dead_letter_id))


@router.post("/{dead_letter_id}/requeue", response_model=DeadLetterPublic,
             summary="Put a dead letter back on its topic",
             description="After the cause is fixed (a new release, a mended row), the original message goes back "
                         "to its Kafka topic with its original key. Only messages that came from Kafka can be "
                         "requeued, and each once (409 otherwise): if it fails again, it is a new dead letter.")
async def requeue(dead_letter_id: str, request: Request, session: SessionDep, _: OperatorDep):
    row = await store.find(session, dead_letter_id)
    if not row.source.startswith(KAFKA_SOURCE):
        raise Conflict(f"{row.source} is a stored row, not a message: mend it where it lives")
    # Claimed and committed first, so two calls cannot both put it back; released if the broker refuses.
    claimed = await store.claim(session, dead_letter_id)
    await session.commit()
    if claimed is None:  # requeued before, or by a call racing this one (then its time was not read yet)
        when = f" at {row.requeued_at.isoformat()}" if row.requeued_at else ""
        raise Conflict(f"dead letter {dead_letter_id} was requeued{when}")
    try:
        await request.app.state.producer.send_and_wait(row.source.removeprefix(KAFKA_SOURCE), bytes(row.payload),
                                                       key=bytes(row.key) if row.key is not None else None)
    except BaseException:
        await store.release(session, dead_letter_id)
        await session.commit()
        raise
    return present(claimed)
