"""Tell every matcher and dispatcher replica that a company's configuration changed, through an
outbox: the route adds the notification to the transaction of the change, and a relay loop in
every api replica publishes pending notifications to `changes.v1`, then deletes them. So a
committed change is always announced (a broker outage delays it, never loses it), and the api
never answers 500 after a commit because the broker refused.

Replicas relay side by side (`FOR UPDATE SKIP LOCKED`). Each pass also takes a shared advisory
lock, so whoever holds `OUTBOX_PAUSE_LOCK` exclusively (an operator, or a test) pauses relaying
without blocking the routes."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from fastapi import Request
from sqlalchemy import delete, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.kafka import publish_change
from shared.messages import ChangeKind
from shared.models import ChangeOutbox
from shared.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_PAUSE_LOCK = 0x656D_6F75_7462  # "emoutb"
RELAY_BATCH = 500


def announce(request: Request, session: AsyncSession, kind: ChangeKind, company_id: str) -> None:
    """Call before committing the change: the notification commits (or rolls back) with it, and
    this replica's relay wakes as soon as it is committed."""
    session.add(ChangeOutbox(kind=kind, company_id=company_id))
    wake: asyncio.Event = request.app.state.outbox_wake
    event.listen(session.sync_session, "after_commit", lambda _: wake.set(), once=True)


async def relay_changes(db: Database, producer: AIOKafkaProducer, settings: Settings, wake: asyncio.Event) -> None:
    while True:
        wake.clear()
        try:
            while await relay_once(db, producer, settings):
                pass
        except Exception as exc:  # broker or database away: the rows stay, the next pass retries
            log.warning("change outbox relay failed, will retry: %s", exc)
        try:
            await asyncio.wait_for(wake.wait(), timeout=settings.outbox_poll_seconds)
        except TimeoutError:
            pass


async def relay_once(db: Database, producer: AIOKafkaProducer, settings: Settings) -> bool:
    """Publish and delete up to RELAY_BATCH pending notifications; True when there may be more."""
    async with db.transaction() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": OUTBOX_PAUSE_LOCK})
        rows = (await session.execute(
            select(ChangeOutbox.id, ChangeOutbox.kind, ChangeOutbox.company_id)
            .order_by(ChangeOutbox.id).limit(RELAY_BATCH).with_for_update(skip_locked=True))).all()
        if not rows:
            return False
        for kind, company_id in dict.fromkeys((row.kind, row.company_id) for row in rows):
            await publish_change(producer, settings, kind, company_id)
        await session.execute(delete(ChangeOutbox).where(ChangeOutbox.id.in_([row.id for row in rows])))
    return len(rows) == RELAY_BATCH
