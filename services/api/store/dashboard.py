"""What the delivery dashboard reads. Counts come from trigger-kept counters
(`delivery_status_counts`, `delivery_configuration_activity`), so the answer costs a few index
lookups whatever the size of the deliveries table."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import DeliveryConfiguration, DeliveryConfigurationActivity, DeliveryStatusCount
from shared.statuses import DeliveryStatus

# The last few attempts of each of the company's endpoints, in one query
# (one index range of ix_attempts_endpoint_health per endpoint).
ENDPOINT_ATTEMPTS = text("""
SELECT u.url, recent.outcome, recent.started_at, recent.error
FROM unnest(CAST(:urls AS text[])) AS u(url)
CROSS JOIN LATERAL (
    SELECT outcome, started_at, error FROM delivery_attempts
    WHERE company_id = :company AND endpoint_url = u.url
    ORDER BY started_at DESC LIMIT :sample
) AS recent
ORDER BY u.url, recent.started_at DESC
""")


def _owned(company_id: str):
    # A subquery, not a list of ids: a company may have more configurations than a statement may have parameters.
    return select(DeliveryConfiguration.id).where(DeliveryConfiguration.company_id == company_id)


async def status_counts(session: AsyncSession, company_id: str) -> dict[str, dict[str, int]]:
    """Deliveries by status, per delivery configuration id that has any (every status present)."""
    counts: dict[str, dict[str, int]] = {}
    for row in (await session.scalars(select(DeliveryStatusCount).where(
            DeliveryStatusCount.delivery_configuration_id.in_(_owned(company_id))))).all():
        per_status = counts.setdefault(row.delivery_configuration_id, {s.value: 0 for s in DeliveryStatus})
        per_status[row.status] = row.count
    return counts


async def activity(session: AsyncSession, company_id: str) -> dict[str, DeliveryConfigurationActivity]:
    """The latest success and failure, per delivery configuration id that has had any."""
    rows = (await session.scalars(select(DeliveryConfigurationActivity).where(
        DeliveryConfigurationActivity.delivery_configuration_id.in_(_owned(company_id))))).all()
    return {row.delivery_configuration_id: row for row in rows}


async def recent_attempts(session: AsyncSession, company_id: str, urls: list[str], sample: int) -> dict[str, list]:
    """The company's last `sample` attempts at each URL, newest first (`outcome`, `started_at`, `error`)."""
    attempts: dict[str, list] = {url: [] for url in urls}
    for row in (await session.execute(ENDPOINT_ATTEMPTS, {"company": company_id, "urls": urls,
                                                          "sample": sample})).all():
        attempts[row.url].append(row)
    return attempts
