"""The two things a company can do to deliveries, for one event or for a bulk selection. The
company is a required argument: the conditions only narrow the company's own deliveries."""

from __future__ import annotations

from sqlalchemy import case, func, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Delivery, DeliveryConfiguration
from shared.statuses import DeliveryStatus

RELEASE_HELD = text(f"""
UPDATE deliveries d SET
    status = CASE WHEN d.attempt_count = 0 THEN '{DeliveryStatus.QUEUED}' ELSE '{DeliveryStatus.PENDING_RETRY}' END,
    next_attempt_at = now() + held.position * interval '1 microsecond',
    updated_at = now()
FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS position
      FROM deliveries
      WHERE company_id = :company_id AND delivery_configuration_id = :configuration_id
        AND status = '{DeliveryStatus.HELD}') AS held
WHERE d.id = held.id AND d.status = '{DeliveryStatus.HELD}'  -- not one marked handled meanwhile
""")


async def release_held(session: AsyncSession, company_id: str, delivery_configuration_id: str) -> int:
    """A resumed configuration's held deliveries, due now in the order they were created: the
    dispatcher's poller puts them on Kafka oldest first, and the configuration's throttle paces
    them like any delivery."""
    result = await session.execute(RELEASE_HELD, {"company_id": company_id,
                                                  "configuration_id": delivery_configuration_id})
    return result.rowcount


async def requeue(session: AsyncSession, company_id: str, conditions: list,
                  delivery_configuration_id: str | None = None, keep_succeeded: bool = False) -> int:
    """Deliver again from the start of the retry schedule. Realtime deliveries become due now
    (the dispatcher's retry poller puts them on Kafka); scheduled ones go back to `buffered` and
    into the next file. Only through one configuration when `delivery_configuration_id` is given."""
    scheduled = DeliveryConfiguration.mode == "scheduled"
    statement = (
        update(Delivery)
        .where(
            Delivery.company_id == company_id,
            Delivery.delivery_configuration_id == DeliveryConfiguration.id,
            *conditions,
        )
        .values(
            status=case((scheduled, DeliveryStatus.BUFFERED.value), else_=DeliveryStatus.QUEUED.value),
            next_attempt_at=case((scheduled, None), else_=func.now()),
            buffer_file_id=None,
            attempt_count=0,
            succeeded_endpoints=Delivery.succeeded_endpoints if keep_succeeded else [],
            last_error=None,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    if delivery_configuration_id:
        statement = statement.where(Delivery.delivery_configuration_id == delivery_configuration_id)
    return (await session.execute(statement)).rowcount


async def mark_handled(session: AsyncSession, company_id: str, conditions: list) -> int:
    """Nothing more is attempted."""
    statement = (
        update(Delivery)
        .where(Delivery.company_id == company_id, *conditions)
        .values(status=DeliveryStatus.HANDLED.value, next_attempt_at=None, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).rowcount
