"""Bulk action jobs as a company sees them (the job itself runs in services/api/bulk.py)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.schemas import EventFilter
from services.api.store import find_owned, saved
from shared.ids import new_id
from shared.models import BulkAction

LISTED = 100  # the most recent jobs a listing shows


class BulkActionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


async def find(session: AsyncSession, company_id: str, bulk_action_id: str) -> BulkAction:
    return await find_owned(session, BulkAction, company_id, bulk_action_id, "bulk action")


async def recent(session: AsyncSession, company_id: str) -> list[BulkAction]:
    """The company's last LISTED jobs, newest first."""
    return list((await session.scalars(select(BulkAction).where(BulkAction.company_id == company_id)
                                       .order_by(BulkAction.id.desc()).limit(LISTED))).all())


async def create_replay(session: AsyncSession, company_id: str, subscription_id: str, start: datetime,
                        end: datetime, total: int) -> BulkAction:
    """A running replay job (services/api/replay.py): its subscription and window as its filter,
    `total` the events it scans, its counts in `result`."""
    job = BulkAction(id=new_id("bulk"), company_id=company_id, action="replay",
                     filter={"subscription_id": subscription_id, "from": start.isoformat(), "to": end.isoformat()},
                     status=BulkActionStatus.RUNNING.value, total=total, processed=0,
                     result={"matched": 0, "already_delivered": 0, "created": 0})
    audit.record(session, "subscription.replay", "subscription", subscription_id,
                 after={"bulk_action_id": job.id, "filter": job.filter, "total": total})
    return await saved(session, job)


async def create(session: AsyncSession, company_id: str, action: str, event_filter: EventFilter) -> BulkAction:
    """A running job with its filter stored; start it once committed."""
    job = BulkAction(id=new_id("bulk"), company_id=company_id, action=action, filter=event_filter.stored(),
                     status=BulkActionStatus.RUNNING.value, total=0, processed=0)
    audit.record(session, "bulk_action.create", "bulk_action", job.id, after={"action": action, "filter": job.filter})
    return await saved(session, job)
