"""Operator API: a company's rate limit (shared/ratelimit.py)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.api.deps import OperatorDep, SessionDep, SettingsDep
from services.api.schemas import Strict, with_example
from services.api.store import rate_limits as store

router = APIRouter(prefix="/v1/admin", tags=["operator"])


class CompanyLimitUpdate(Strict):
    model_config = with_example({"rate_limit_per_minute": 600})

    rate_limit_per_minute: int | None = Field(
        description="Requests per minute each of the company's API keys may make, on all api replicas together "
                    "(bursts up to it, then the steady rate); null: the default, `EM_API_RATE_LIMIT_PER_MINUTE`",
        ge=1, le=10_000_000, strict=True)


class CompanyLimitPublic(BaseModel):
    id: str
    name: str
    rate_limit_per_minute: int | None = Field(description="the company's own limit; null: the default")
    effective_rate_limit_per_minute: int = Field(description="the limit its keys have now")


@router.patch("/companies/{company_id}", response_model=CompanyLimitPublic, summary="Set a company's rate limit",
              description="Each API key of the company may make this many requests per minute; past it, 429 with "
                          "`Retry-After`. Applies from the next request on every replica (a key refused before the "
                          "change waits out the Retry-After it was given).")
async def set_company_limit(company_id: str, body: CompanyLimitUpdate, session: SessionDep, settings: SettingsDep,
                            _: OperatorDep):
    company = await store.set_company_limit(session, company_id, body.rate_limit_per_minute)
    await session.commit()
    return CompanyLimitPublic(id=company.id, name=company.name, rate_limit_per_minute=company.rate_limit_per_minute,
                              effective_rate_limit_per_minute=company.rate_limit_per_minute
                              or settings.api_rate_limit_per_minute)
