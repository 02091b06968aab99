"""The delivery dashboard: per delivery configuration, counts by status, last success and
failure, and each endpoint's health."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import Reader, SessionDep
from services.api.store import dashboard as store
from services.api.store import delivery_configurations
from shared.models import DeliveryConfiguration, DeliveryConfigurationActivity
from shared.statuses import AttemptOutcome, DeliveryStatus

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])

HEALTH_SAMPLE = 20


class EndpointHealthPublic(BaseModel):
    id: str
    url: str
    active: bool
    health: str  # healthy | degraded | failing | unknown
    success_rate: float | None
    last_attempt_at: datetime | None
    last_error: str | None


class ConfigurationStatusPublic(BaseModel):
    delivery_configuration_id: str
    name: str
    mode: str
    active: bool
    counts: dict[str, int]
    last_success_at: datetime | None
    last_failure_at: datetime | None
    endpoints: list[EndpointHealthPublic]


class DashboardPublic(BaseModel):
    data: list[ConfigurationStatusPublic]


def _health(attempts: list) -> tuple[str, float | None]:
    """Judged from the last attempts, newest first: the latest outcome and the success rate."""
    if not attempts:
        return "unknown", None
    rate = sum(1 for a in attempts if a.outcome == AttemptOutcome.SUCCESS) / len(attempts)
    if attempts[0].outcome == AttemptOutcome.SUCCESS:
        return ("healthy" if rate >= 0.9 else "degraded"), rate
    return ("failing" if rate < 0.5 else "degraded"), rate


def _endpoint(endpoint: dict, attempts: list) -> EndpointHealthPublic:
    health, rate = _health(attempts)
    return EndpointHealthPublic(
        id=endpoint["id"], url=endpoint["url"], active=endpoint["active"], health=health, success_rate=rate,
        last_attempt_at=attempts[0].started_at if attempts else None,
        last_error=next((a.error for a in attempts if a.outcome != AttemptOutcome.SUCCESS), None))


def _configuration(configuration: DeliveryConfiguration, counts: dict[str, int] | None,
                   seen: DeliveryConfigurationActivity | None, attempts: dict[str, list]) -> ConfigurationStatusPublic:
    return ConfigurationStatusPublic(
        delivery_configuration_id=configuration.id, name=configuration.name, mode=configuration.mode,
        active=configuration.active, counts=counts or {status.value: 0 for status in DeliveryStatus},
        last_success_at=seen.last_success_at if seen else None,
        last_failure_at=seen.last_failure_at if seen else None,
        endpoints=[_endpoint(endpoint, attempts[endpoint["url"]]) for endpoint in configuration.endpoints])


@router.get("", response_model=DashboardPublic, summary="Delivery dashboard",
            description="For each delivery configuration: deliveries by status ("
                        f"{', '.join(f'`{status}`' for status in DeliveryStatus)}), last success and failure, and "
                        f"the health of each endpoint judged from its last {HEALTH_SAMPLE} attempts.")
async def dashboard(session: SessionDep, caller: Reader):
    configurations = await delivery_configurations.list_all(session, caller.company_id)
    counts = await store.status_counts(session, caller.company_id)
    activity = await store.activity(session, caller.company_id)
    urls = sorted({endpoint["url"] for configuration in configurations for endpoint in configuration.endpoints})
    attempts = await store.recent_attempts(session, caller.company_id, urls, HEALTH_SAMPLE)
    return DashboardPublic(data=[_configuration(c, counts.get(c.id), activity.get(c.id), attempts)
                                 for c in configurations])

