"""The delivery dashboard: per delivery configuration, counts by status, last success and
failure, and each endpoint's health. Counts come from trigger-kept counters, so the answer
costs a few index lookups whatever the size of the deliveries table."""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select, text

from services.api.deps import CompanyDep, SessionDep
from services.api.schemas import DeliveryStatus
from shared.models import DeliveryConfiguration, DeliveryConfigurationActivity, DeliveryStatusCount

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

HEALTH_SAMPLE = 20

# The last few attempts of each of the company's endpoints, in one query
# (one index range of ix_attempts_endpoint_health per endpoint).
ENDPOINT_HEALTH = text("""
SELECT u.url, recent.outcome, recent.started_at, recent.error
FROM unnest(CAST(:urls AS text[])) AS u(url)
CROSS JOIN LATERAL (
    SELECT outcome, started_at, error FROM delivery_attempts
    WHERE company_id = :company AND endpoint_url = u.url
    ORDER BY started_at DESC LIMIT :sample
) AS recent
ORDER BY u.url, recent.started_at DESC
""")


class EndpointHealth(BaseModel):
    id: str
    url: str
    active: bool
    health: str  # healthy | degraded | failing | unknown
    success_rate: float | None
    last_attempt_at: datetime | None
    last_error: str | None


class ConfigurationStatus(BaseModel):
    delivery_configuration_id: str
    name: str
    mode: str
    active: bool
    counts: dict[str, int]
    last_success_at: datetime | None
    last_failure_at: datetime | None
    endpoints: list[EndpointHealth]


class Dashboard(BaseModel):
    data: list[ConfigurationStatus]


def _health(attempts) -> tuple[str, float | None]:
    if not attempts:
        return "unknown", None
    rate = sum(1 for a in attempts if a.outcome == "success") / len(attempts)
    if attempts[0].outcome == "success":
        return ("healthy" if rate >= 0.9 else "degraded"), rate
    return ("failing" if rate < 0.5 else "degraded"), rate


@router.get("", response_model=Dashboard, summary="Delivery dashboard",
            description="For each delivery configuration: deliveries by status (`queued`, `pending_retry`, "
                        "`failed`, `delivered`, `handled`, `buffered`), last success and failure, and the health "
                        f"of each endpoint judged from its last {HEALTH_SAMPLE} attempts.")
async def dashboard(session: SessionDep, caller: CompanyDep):
    configurations = (await session.scalars(
        select(DeliveryConfiguration).where(DeliveryConfiguration.company_id == caller.company_id)
        .order_by(DeliveryConfiguration.id))).all()
    ids = [c.id for c in configurations]
    # A subquery, not a list of ids: a company may have more configurations than a statement may have parameters.
    owned = select(DeliveryConfiguration.id).where(DeliveryConfiguration.company_id == caller.company_id)
    counts: dict[str, dict[str, int]] = {i: dict.fromkeys(get_args(DeliveryStatus), 0) for i in ids}
    for row in (await session.scalars(
            select(DeliveryStatusCount).where(DeliveryStatusCount.delivery_configuration_id.in_(owned)))).all():
        counts[row.delivery_configuration_id][row.status] = row.count
    activity = {row.delivery_configuration_id: row for row in (await session.scalars(
        select(DeliveryConfigurationActivity)
        .where(DeliveryConfigurationActivity.delivery_configuration_id.in_(owned)))).all()}
    urls = sorted({endpoint["url"] for configuration in configurations for endpoint in configuration.endpoints})
    recent_attempts: dict[str, list] = {url: [] for url in urls}
    for row in (await session.execute(ENDPOINT_HEALTH, {"company": caller.company_id, "urls": urls,
                                                        "sample": HEALTH_SAMPLE})).all():
        recent_attempts[row.url].append(row)
    result = []
    for configuration in configurations:
        endpoints = []
        for endpoint in configuration.endpoints:
            attempts = recent_attempts[endpoint["url"]]
            health, rate = _health(attempts)
            last_error = next((a.error for a in attempts if a.outcome != "success"), None)
            endpoints.append(EndpointHealth(
                id=endpoint["id"], url=endpoint["url"], active=endpoint["active"], health=health,
                success_rate=rate, last_attempt_at=attempts[0].started_at if attempts else None,
                last_error=last_error))
        seen = activity.get(configuration.id)
        result.append(ConfigurationStatus(
            delivery_configuration_id=configuration.id, name=configuration.name, mode=configuration.mode,
            active=configuration.active, counts=counts[configuration.id],
            last_success_at=seen.last_success_at if seen else None,
            last_failure_at=seen.last_failure_at if seen else None, endpoints=endpoints))
    return Dashboard(data=result)
