"""The two things a company can do to deliveries, for one event or for a bulk selection."""

from __future__ import annotations

from sqlalchemy import case, func, update

from shared.models import Delivery, DeliveryConfiguration


async def requeue_deliveries(session, company_id: str, conditions: list, configuration_id: str | None = None) -> int:
    """Deliver again from the start of the retry schedule. Realtime deliveries become due now
    (the dispatcher's retry poller puts them on Kafka within a second); scheduled ones go back
    to `buffered` and into the next file."""
    scheduled = DeliveryConfiguration.mode == "scheduled"
    statement = (
        update(Delivery)
        .where(
            Delivery.company_id == company_id,
            Delivery.delivery_configuration_id == DeliveryConfiguration.id,
            *conditions,
        )
        .values(
            status=case((scheduled, "buffered"), else_="queued"),
            next_attempt_at=case((scheduled, None), else_=func.now()),
            buffer_file_id=None,
            attempt_count=0,
            succeeded_endpoints=[],
            last_error=None,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    if configuration_id:
        statement = statement.where(Delivery.delivery_configuration_id == configuration_id)
    return (await session.execute(statement)).rowcount


async def handle_deliveries(session, company_id: str, conditions: list) -> int:
    """Mark as handled: nothing more is attempted."""
    statement = (
        update(Delivery)
        .where(Delivery.company_id == company_id, *conditions)
        .values(status="handled", next_attempt_at=None, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).rowcount
