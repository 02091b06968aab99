"""Operator API: what the workers set aside (see shared/deadletter.py), and requeueing it after
a fix. Only messages that came from Kafka can be requeued: they go back to their topic with
their original key; a set-aside row is mended where it lives (its configuration, say)."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import text

from services.api.deps import OperatorDep, SessionDep
from services.api.pagination import decode_cursor, encode_cursor
from shared.deadletter import KAFKA_SOURCE
from shared.errors import Conflict, NotFound

router = APIRouter(prefix="/v1/admin/dead-letters", tags=["operator"])

COLUMNS = "id, service, source, company_id, reason, payload, created_at, requeued_at"


class DeadLetter(BaseModel):
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
    data: list[DeadLetter]
    next_cursor: str | None


def _view(row) -> DeadLetter:
    payload = bytes(row.payload)
    try:
        as_text = payload.decode("utf-8")
    except UnicodeDecodeError:
        as_text = None
    return DeadLetter(id=row.id, service=row.service, source=row.source, company_id=row.company_id,
                      reason=row.reason, payload_base64=base64.b64encode(payload).decode(), payload_text=as_text,
                      created_at=row.created_at, requeued_at=row.requeued_at)


@router.get("", response_model=DeadLetterPage, summary="List dead letters, newest first")
async def list_dead_letters(session: SessionDep, _: OperatorDep,
                            service: str | None = Query(None, max_length=100, description="matcher, dispatcher..."),
                            company_id: str | None = Query(None, max_length=200),
                            limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=500)):
    """Messages and rows a worker set aside, with the reason and the original payload."""
    conditions, params = ["true"], {"limit": limit + 1}
    if service:
        conditions.append("service = :service")
        params["service"] = service
    if company_id:
        conditions.append("company_id = :company_id")
        params["company_id"] = company_id
    if cursor:
        after_at, params["after_id"] = decode_cursor(cursor, "dead-letters")
        params["after_at"] = datetime.fromisoformat(after_at)
        conditions.append("(created_at, id) < (:after_at, :after_id)")
    rows = (await session.execute(text(
        f"SELECT {COLUMNS} FROM dead_letters WHERE {' AND '.join(conditions)} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"), params)).all()
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    next_cursor = encode_cursor("dead-letters", last.created_at.isoformat(), last.id) if last else None
    return DeadLetterPage(data=[_view(row) for row in page], next_cursor=next_cursor)


@router.get("/{dead_letter_id}", response_model=DeadLetter, summary="Get a dead letter")
async def get_dead_letter(dead_letter_id: str, session: SessionDep, _: OperatorDep):
    """One dead letter with its payload."""
    row = (await session.execute(text(f"SELECT {COLUMNS} FROM dead_letters WHERE id = :id"),
                                 {"id": dead_letter_id})).first()
    if row is None:
        raise NotFound(f"dead letter {dead_letter_id} does not exist")
    return _view(row)


@router.post("/{dead_letter_id}/requeue", response_model=DeadLetter, summary="Put a dead letter back on its topic",
             description="After the cause is fixed (a new release, a mended row), the original message goes back "
                         "to its Kafka topic with its original key. Only messages that came from Kafka can be "
                         "requeued, and each once (409 otherwise): if it fails again, it is a new dead letter.")
async def requeue(dead_letter_id: str, request: Request, session: SessionDep, _: OperatorDep):
    row = (await session.execute(text(f"SELECT {COLUMNS}, key FROM dead_letters WHERE id = :id"),
                                 {"id": dead_letter_id})).first()
    if row is None:
        raise NotFound(f"dead letter {dead_letter_id} does not exist")
    if not row.source.startswith(KAFKA_SOURCE):
        raise Conflict(f"{row.source} is a stored row, not a message: mend it where it lives")
    # Claimed first, so two calls cannot both put it back; released again if the broker refuses.
    claimed = (await session.execute(text(f"UPDATE dead_letters SET requeued_at = now() "
                                          f"WHERE id = :id AND requeued_at IS NULL RETURNING {COLUMNS}"),
                                     {"id": dead_letter_id})).first()
    await session.commit()
    if claimed is None:
        raise Conflict(f"dead letter {dead_letter_id} was requeued at {row.requeued_at.isoformat()}")
    try:
        await request.app.state.producer.send_and_wait(row.source.removeprefix(KAFKA_SOURCE), bytes(row.payload),
                                                       key=bytes(row.key) if row.key is not None else None)
    except BaseException:
        await session.execute(text("UPDATE dead_letters SET requeued_at = NULL WHERE id = :id"),
                              {"id": dead_letter_id})
        await session.commit()
        raise
    return _view(claimed)
