"""Bulk actions: republish or mark handled everything a filter selects, as a job with progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from services.api.deps import CompanyDep, SessionDep
from services.api.schemas import DeliveryStatus
from shared.errors import NotFound
from shared.ids import new_id
from shared.models import BulkAction
from shared.validation import Moment

router = APIRouter(prefix="/v1/bulk-actions", tags=["bulk actions"])


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    status: DeliveryStatus | None = None
    delivery_configuration_id: str | None = None
    subscription_id: str | None = None
    id: str | None = None
    topic: str | None = None
    event_type: str | None = None
    subject: str | None = None
    from_: Moment | None = None
    to: Moment | None = None


class BulkActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "action": "republish",
        "filter": {"status": "failed", "delivery_configuration_id": "dc_01J...",
                   "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
    }]})
    action: Literal["republish", "handled"]
    filter: dict


class BulkActionPublic(BaseModel):
    id: str
    action: str
    filter: dict
    status: str  # running | completed | failed
    total: int
    processed: int
    created_at: datetime
    finished_at: datetime | None


def _selection(raw: dict) -> dict:
    """Validate the filter (`from` is a keyword in Python, hence the renaming)."""
    from shared.errors import InvalidInput

    renamed = {("from_" if k == "from" else k): v for k, v in raw.items()}
    try:
        selection = Selection.model_validate(renamed)
    except ValueError as exc:
        errors = [{"loc": ["filter", *[("from" if p == "from_" else p) for p in e["loc"]]], "msg": e["msg"]}
                  for e in exc.errors()]
        raise InvalidInput("invalid filter", errors) from None
    values = selection.model_dump(exclude_none=True)
    if "from_" in values:
        values["from"] = values.pop("from_").isoformat()
    if "to" in values:
        values["to"] = values["to"].isoformat()
    return values


@router.post("", status_code=202, response_model=BulkActionPublic, summary="Start a bulk action",
             description="Republishes, or marks handled, every delivery matching `filter`: the search "
                         "parameters of `GET /v1/events` (`status`, `delivery_configuration_id`, `subscription_id`, "
                         "`id`, `topic`, `event_type`, `subject`, and the event's `from`/`to` arrival time). Runs "
                         "in the background; poll the job for progress.")
async def start(body: BulkActionCreate, request: Request, session: SessionDep, caller: CompanyDep):
    job = BulkAction(id=new_id("bulk"), company_id=caller.company_id, action=body.action,
                     filter=_selection(body.filter), status="running", total=0, processed=0)
    session.add(job)
    await session.commit()
    await session.refresh(job)
    request.app.state.start_bulk_job(job.id)
    return job


@router.get("", response_model=list[BulkActionPublic], summary="List bulk actions")
async def list_jobs(session: SessionDep, caller: CompanyDep):
    """The company's last 100 bulk actions, newest first."""
    return (await session.scalars(select(BulkAction).where(BulkAction.company_id == caller.company_id)
                                  .order_by(BulkAction.id.desc()).limit(100))).all()


@router.get("/{job_id}", response_model=BulkActionPublic, summary="A bulk action's progress")
async def get_job(job_id: str, session: SessionDep, caller: CompanyDep):
    """Status (`running`, `completed`, `failed`), how many deliveries matched and how many are done."""
    job = await session.get(BulkAction, job_id)
    if job is None or job.company_id != caller.company_id:
        raise NotFound(f"bulk action {job_id} does not exist")
    return job
