"""Bulk actions: republish or mark handled everything a filter selects, as a job with progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Bulk, Reader, SessionDep
from services.api.schemas import EventFilter
from services.api.store import bulk_actions as store
from services.api.store.bulk_actions import BulkActionStatus

router = APIRouter(prefix="/v1/bulk-actions", tags=["bulk actions"])


class BulkActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "action": "republish",
        "filter": {"status": "failed", "delivery_configuration_id": "dc_01J...",
                   "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
    }]})
    action: Literal["republish", "handled"]
    filter: EventFilter


class BulkActionPublic(BaseModel):
    id: str
    action: str
    filter: dict  # the filters given, as stored with the job
    status: BulkActionStatus
    total: int
    processed: int
    result: dict[str, int] | None = Field(None, description="a replay's counts: matched, already_delivered, created")
    created_at: datetime
    finished_at: datetime | None


@router.post("", status_code=202, response_model=BulkActionPublic, summary="Start a bulk action",
             description="Republishes, or marks handled, every delivery matching `filter`: the search "
                         "parameters of `GET /v1/events` (`status`, `delivery_configuration_id`, `subscription_id`, "
                         "`id`, `topic`, `event_type`, `subject`, and the event's `from`/`to` arrival time). Runs "
                         "in the background; poll the job for progress.")
async def start(body: BulkActionCreate, request: Request, session: SessionDep, caller: Bulk):
    job = await store.create(session, caller.company_id, body.action, body.filter)
    await session.commit()
    request.app.state.start_bulk_job(job.id)
    return job


@router.get("", response_model=list[BulkActionPublic], summary="List bulk actions")
async def list_jobs(session: SessionDep, caller: Reader):
    """The company's last 100 bulk actions, newest first."""
    return await store.recent(session, caller.company_id)


@router.get("/{job_id}", response_model=BulkActionPublic, summary="A bulk action's progress")
async def get_job(job_id: str, session: SessionDep, caller: Reader):
    """Status (`running`, `completed`, `failed`), how many deliveries matched and how many are done.
    A replay (`action: replay`, started by `POST /v1/subscriptions/{id}/replay`) counts events
    scanned, and its `result` says how many matched, already had a delivery, and were created."""
    return await store.find(session, caller.company_id, job_id)
