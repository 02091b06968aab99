"""Reading the audit log (records are written by services/api/audit.py, next to each change).

A company reads its own records only; the operator reads every company's and the operator-wide
ones (sources, topics, dead letters). Newest first, by (occurred_at, id), on the indexes
`ix_audit_log_company_occurred` and `ix_audit_log_occurred`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.store import fetch_page
from shared.models import AuditRecord


@dataclass(frozen=True)
class AuditFilter:
    resource_type: str | None = None
    resource_id: str | None = None
    action: str | None = None
    actor_id: str | None = None
    actor_kind: str | None = None
    from_: datetime | None = None
    to: datetime | None = None


async def company_page(session: AsyncSession, company_id: str, audit_filter: AuditFilter,
                       after: tuple[datetime, str] | None, limit: int) -> tuple[list[AuditRecord], bool]:
    """The company's records (never another's, never the operator-wide ones) and whether more follow."""
    return await _page(session, [AuditRecord.company_id == company_id], audit_filter, after, limit)


async def operator_page(session: AsyncSession, company_id: str | None, audit_filter: AuditFilter,
                        after: tuple[datetime, str] | None, limit: int) -> tuple[list[AuditRecord], bool]:
    """For the operator: every record, or one company's when `company_id` is given."""
    scope = [AuditRecord.company_id == company_id] if company_id else []
    return await _page(session, scope, audit_filter, after, limit)


async def _page(session: AsyncSession, scope: list, audit_filter: AuditFilter,
                after: tuple[datetime, str] | None, limit: int) -> tuple[list[AuditRecord], bool]:
    conditions = [*scope, *_conditions(audit_filter)]
    if after:
        occurred_at, record_id = after
        conditions.append(or_(AuditRecord.occurred_at < occurred_at,
                              and_(AuditRecord.occurred_at == occurred_at, AuditRecord.id < record_id)))
    query = (select(AuditRecord).where(*conditions)
             .order_by(AuditRecord.occurred_at.desc(), AuditRecord.id.desc()))
    return await fetch_page(session, query, limit)


def _conditions(audit_filter: AuditFilter) -> list:
    equal = {AuditRecord.resource_type: audit_filter.resource_type, AuditRecord.resource_id: audit_filter.resource_id,
             AuditRecord.action: audit_filter.action, AuditRecord.actor_id: audit_filter.actor_id,
             AuditRecord.actor_kind: audit_filter.actor_kind}
    conditions = [column == value for column, value in equal.items() if value is not None]
    if audit_filter.from_ is not None:
        conditions.append(AuditRecord.occurred_at >= audit_filter.from_)
    if audit_filter.to is not None:
        conditions.append(AuditRecord.occurred_at < audit_filter.to)
    return conditions
