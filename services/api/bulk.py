"""Bulk actions as jobs: republish or mark handled every delivery that matches a filter, in
batches of 1000 by delivery id, with progress in the `bulk_actions` row; or replay a
subscription over retained events (kind `replay`, one batch of events per step, in
services/api/replay.py). A job survives an api
restart (running jobs are resumed on start) and each batch locks the job row, so two replicas
never apply the same batch."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import func, select

from services.api import replay
from services.api.schemas import EventFilter
from services.api.store import deliveries
from services.api.store.bulk_actions import BulkActionStatus
from services.api.store.filters import matching_deliveries
from shared.db import Database
from shared.models import BulkAction, Delivery

log = logging.getLogger(__name__)

BATCH = 1000


async def run_job(db: Database, job_id: str) -> None:
    try:
        while await _step(db, job_id):
            pass
    except Exception as exc:
        log.exception("bulk action %s failed", job_id)
        async with db.transaction() as session:
            job = await session.get(BulkAction, job_id)
            job.status, job.error = BulkActionStatus.FAILED.value, type(exc).__name__
            job.finished_at = datetime.now(UTC)


async def _step(db: Database, job_id: str) -> bool:
    """Apply one batch; False when the job is finished (or another replica holds it)."""
    async with db.transaction() as session:
        job = await session.scalar(select(BulkAction).where(BulkAction.id == job_id).with_for_update(skip_locked=True))
        if job is None or job.status != BulkActionStatus.RUNNING:
            return False
        if job.action == replay.REPLAY:
            return await replay.step(session, job)
        # The job's own company: the filter only narrows that company's deliveries.
        conditions = matching_deliveries(job.company_id, EventFilter.model_validate(job.filter))
        if job.cursor is None and job.processed == 0:
            job.total = await session.scalar(select(func.count()).select_from(Delivery).where(*conditions))
        query = select(Delivery.id).where(*conditions)
        if job.cursor:
            query = query.where(Delivery.id > job.cursor)
        ids = (await session.scalars(query.order_by(Delivery.id).limit(BATCH))).all()
        if not ids:
            job.status = BulkActionStatus.COMPLETED.value
            job.finished_at = datetime.now(UTC)
            return False
        chosen = [Delivery.id.in_(ids)]
        if job.action == "republish":
            await deliveries.requeue(session, job.company_id, chosen)
        else:
            await deliveries.mark_handled(session, job.company_id, chosen)
        job.processed += len(ids)
        job.cursor = ids[-1]
        return True


async def resume_jobs(db: Database, start) -> None:
    async with db.sessions() as session:
        running = (await session.scalars(
            select(BulkAction.id).where(BulkAction.status == BulkActionStatus.RUNNING.value))).all()
    for job_id in running:
        start(job_id)
