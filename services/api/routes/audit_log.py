"""The audit log: every change to a company's configuration, and who made it (issue 16)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from services.api.deps import OperatorDep, Reader, SessionDep
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import Strict
from services.api.store import audit_log as store
from shared.models import AuditRecord
from shared.validation import Moment

router = APIRouter(tags=["audit log"])

LISTING = "audit-log"


class AuditSearch(Strict):
    resource_type: str | None = Field(None, max_length=200, description="delivery_configuration, subscription, "
                                "monitored_numbers, bulk_action, event, signing_key, ...")
    resource_id: str | None = Field(None, max_length=200)
    action: str | None = Field(None, max_length=200, description="e.g. `delivery_configuration.update`")
    actor_id: str | None = Field(None, max_length=200, description="the API key (application) or token id that acted")
    actor_kind: Literal["api_key", "console", "operator", "source", "system"] | None = None
    from_: Moment | None = Field(None, alias="from", description="records at or after this time")
    to: Moment | None = Field(None, description="records before this time")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=500, description="`next_cursor` of the previous page")

    @model_validator(mode="after")
    def _from_before_to(self) -> AuditSearch:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("`from` must be before `to`")
        return self

    def audit_filter(self) -> store.AuditFilter:
        return store.AuditFilter(self.resource_type, self.resource_id, self.action, self.actor_id,
                                 self.actor_kind, self.from_, self.to)

    def after(self) -> tuple[datetime, str] | None:
        if not self.cursor:
            return None
        occurred_at, record_id = decode_cursor(self.cursor, LISTING)
        return datetime.fromisoformat(occurred_at), record_id


class OperatorAuditSearch(AuditSearch):
    company_id: str | None = Field(None, max_length=200, description="one company's records only")


class AuditActor(BaseModel):
    kind: str = Field(description="api_key, console, operator, source, or system (a background job)")
    id: str | None = Field(description="the API key (application), console application or source token id")
    name: str | None
    address: str | None = Field(description="the client address the change came from (in a company's own log, "
                                            "null for the operator's changes: the operator's network is not the "
                                            "company's business)")


class AuditRecordPublic(BaseModel):
    id: str
    company_id: str | None = Field(description="null for operator-wide changes (sources, topics)")
    occurred_at: datetime
    actor: AuditActor
    action: str
    resource_type: str
    resource_id: str | None
    before: dict | None = Field(description="the non-secret fields before the change (an update: those it changed)")
    after: dict | None = Field(description="...and after it; `secrets` names each secret set, changed or removed, "
                                           "never its value")


class AuditPage(BaseModel):
    data: list[AuditRecordPublic]
    next_cursor: str | None


def _address(row: AuditRecord, for_company: bool) -> str | None:
    """A company sees its own callers' addresses, not the operator's."""
    return None if for_company and row.actor_kind == "operator" else row.client_address


def _page(rows: list[AuditRecord], more: bool, for_company: bool) -> AuditPage:
    data = [AuditRecordPublic(
        id=row.id, company_id=row.company_id, occurred_at=row.occurred_at,
        actor=AuditActor(kind=row.actor_kind, id=row.actor_id, name=row.actor_name,
                         address=_address(row, for_company)),
        action=row.action, resource_type=row.resource_type, resource_id=row.resource_id,
        before=row.before, after=row.after) for row in rows]
    next_cursor = encode_cursor(LISTING, rows[-1].occurred_at.isoformat(), rows[-1].id) if more else None
    return AuditPage(data=data, next_cursor=next_cursor)


@router.get("/v1/audit-log", response_model=AuditPage, summary="The company's audit log",
            description="Every change to the company's delivery configurations, endpoints and secrets (never their "
                        "values), subscriptions, monitored numbers (counts), signing keys, bulk actions, replays "
                        "and keys: who (API key or console, or the operator), when, from which address, and the "
                        "fields before and after. Newest first; filters combine with AND; pass `next_cursor` back "
                        "as `cursor` for the next page. Records are kept as long as events (`EM_RETENTION_DAYS`).")
async def company_audit_log(session: SessionDep, caller: Reader, query: Annotated[AuditSearch, Query()]):
    rows, more = await store.company_page(session, caller.company_id, query.audit_filter(), query.after(),
                                          query.limit)
    return _page(rows, more, for_company=True)


@router.get("/v1/admin/audit-log", response_model=AuditPage, summary="Every audit record (operator)",
            description="The audit log of every company, with the operator-wide changes (sources, topics, dead "
                        "letters; `company_id` null). `company_id` selects one company's records.")
async def operator_audit_log(session: SessionDep, _: OperatorDep, query: Annotated[OperatorAuditSearch, Query()]):
    rows, more = await store.operator_page(session, query.company_id, query.audit_filter(), query.after(),
                                           query.limit)
    return _page(rows, more, for_company=False)
