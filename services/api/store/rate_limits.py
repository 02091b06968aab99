"""A company's own rate limit (shared/ratelimit.py applies it to each of its API keys)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from shared.errors import NotFound
from shared.models import Company


async def set_company_limit(session: AsyncSession, company_id: str, per_minute: int | None) -> Company:
    """`per_minute` None: back to the default (EM_API_RATE_LIMIT_PER_MINUTE). Takes effect on every
    replica with the next request: the limit is read in the same statement that takes a token."""
    company = await session.get(Company, company_id, with_for_update=True)
    if company is None:
        raise NotFound(f"company {company_id} does not exist")
    audit.record(session, "company.rate_limit", "company", company_id,
                 before={"rate_limit_per_minute": company.rate_limit_per_minute},
                 after={"rate_limit_per_minute": per_minute}, company_id=company_id)
    company.rate_limit_per_minute = per_minute
    await session.flush()
    return company
