"""The queries of replay and simulation over a company's retained events
(services/api/replay.py decides what matches; these only read and write rows).

Every query is scoped to the company and to one topic, on the index
`ix_events_company_topic_received (company_id, topic, received_at)`; a window is [from, to) of
the events' arrival time (`received_at`), scanned by the key (received_at, id)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.store import delivery_configurations, subscriptions
from shared.models import Topic
from shared.statuses import DeliveryStatus

BATCH = 1000


class Window(NamedTuple):
    """What a scan reads: one company's events of one topic (and of these types) in [start, end)."""

    topic: str
    event_types: list[str]  # empty: every type
    start: datetime
    end: datetime


class Cursor(NamedTuple):
    received_at: datetime
    id: str

    def stored(self) -> str:
        return f"{self.received_at.isoformat()}|{self.id}"

    @classmethod
    def parse(cls, stored: str | None) -> Cursor | None:
        if not stored:
            return None
        moment, _, event_id = stored.partition("|")
        return cls(datetime.fromisoformat(moment), event_id)


_WHERE = """company_id = :company_id AND topic = :topic AND received_at >= :start AND received_at < :end
  AND (cardinality(CAST(:event_types AS text[])) = 0 OR event_type = ANY(CAST(:event_types AS text[])))"""


def _window_parameters(company_id: str, window: Window) -> dict:
    return {"company_id": company_id, "topic": window.topic, "event_types": window.event_types,
            "start": window.start, "end": window.end}


async def count_within(session: AsyncSession, company_id: str, window: Window,
                       limit: int) -> tuple[int, datetime | None]:
    """How many events the window holds, up to `limit`; and when it holds more, the arrival time
    of the first event beyond the limit (a window ending there holds at most `limit`)."""
    parameters = _window_parameters(company_id, window) | {"limit": limit}
    beyond = (await session.execute(text(
        f"SELECT received_at FROM events WHERE {_WHERE} ORDER BY received_at, id OFFSET :limit LIMIT 1"),
        parameters)).scalar()
    if beyond is not None:
        return limit, beyond
    count = (await session.execute(text(f"SELECT count(*) FROM events WHERE {_WHERE}"), parameters)).scalar()
    return count, None


class StoredEvent(NamedTuple):
    id: str
    topic: str
    event_type: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict


async def scan(session: AsyncSession, company_id: str, window: Window, after: Cursor | None,
               newest_first: bool = False, size: int = BATCH) -> list[StoredEvent]:
    """The next `size` events of the window after `after`, oldest (or newest) first. Read with
    asyncpg itself on the session's connection (and `data` decoded by orjson): a scan reads up
    to EM_REPLAY_SCAN_LIMIT rows, where the ORM's row handling would cost most of the time."""
    order, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    parameters: list = [company_id, window.topic, window.start, window.end, window.event_types, size]
    keyset = ""
    if after is not None:
        keyset = f"AND (received_at, id) {compare} ($7, $8)"
        parameters += [after.received_at, after.id]
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    rows = await connection.fetch(
        "SELECT id, topic, event_type, subject, occurred_at, received_at, data::text FROM events "
        "WHERE company_id = $1 AND topic = $2 AND received_at >= $3 AND received_at < $4 "
        "AND (cardinality($5::text[]) = 0 OR event_type = ANY($5::text[])) "
        f"{keyset} ORDER BY received_at {order}, id {order} LIMIT $6", *parameters)
    return [StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows]


async def monitored_among(session: AsyncSession, company_id: str, numbers: list[str]) -> set[str]:
    """The numbers of `numbers` the company monitors now (a broadcast event reaches it only then)."""
    if not numbers:
        return set()
    rows = await session.execute(text(
        "SELECT number FROM monitored_numbers WHERE company_id = :company_id "
        "AND number = ANY(CAST(:numbers AS text[]))"),
        {"company_id": company_id, "numbers": numbers})
    return {row[0] for row in rows}


async def delivered_among(session: AsyncSession, company_id: str, subscription_id: str,
                          event_ids: list[str]) -> set[str]:
    """The events of `event_ids` that already have a delivery for the subscription (any status)."""
    if not event_ids:
        return set()
    rows = await session.execute(text(
        "SELECT event_id FROM deliveries WHERE company_id = :company_id AND subscription_id = :subscription_id "
        "AND event_id = ANY(CAST(:event_ids AS text[]))"),
        {"company_id": company_id, "subscription_id": subscription_id, "event_ids": event_ids})
    return {row[0] for row in rows}


# Realtime deliveries are due at once, one microsecond apart in the events' order, so the
# dispatcher's retry poller (ORDER BY next_attempt_at) puts them on Kafka oldest first and they
# pass the configuration's throttle like any delivery. Scheduled ones wait for the next file.
# ON CONFLICT: uq_delivery_event_subscription keeps one delivery per event and subscription,
# whoever (matcher, an earlier or concurrent replay) wrote it first.
INSERT_DELIVERIES = text(f"""
INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status,
                        attempt_count, succeeded_endpoints, next_attempt_at, created_at, updated_at)
SELECT d.id, :company_id, d.event_id, :subscription_id, :delivery_configuration_id,
       CASE WHEN :realtime THEN '{DeliveryStatus.QUEUED}' ELSE '{DeliveryStatus.BUFFERED}' END,
       0, '{{}}'::text[],
       CASE WHEN :realtime THEN now() + d.position * interval '1 microsecond' END, now(), now()
FROM unnest(CAST(:ids AS text[]), CAST(:event_ids AS text[])) WITH ORDINALITY AS d(id, event_id, position)
ON CONFLICT DO NOTHING
RETURNING event_id
""")


async def create_deliveries(session: AsyncSession, company_id: str, subscription_id: str,
                            delivery_configuration_id: str, realtime: bool, ids: list[str],
                            event_ids: list[str]) -> int:
    """Deliveries for these events (in this order) where the subscription has none yet; how many."""
    if not event_ids:
        return 0
    rows = await session.execute(INSERT_DELIVERIES, {
        "company_id": company_id, "subscription_id": subscription_id,
        "delivery_configuration_id": delivery_configuration_id, "realtime": realtime,
        "ids": ids, "event_ids": event_ids})
    return len(rows.all())


async def subscription_row(session: AsyncSession, company_id: str, subscription_id: str) -> tuple[dict, bool, bool]:
    """The subscription as the matcher loads it (its columns and its configuration's `mode`), and
    whether the subscription and its configuration are active. NotFound for another company's."""
    subscription = await subscriptions.find(session, company_id, subscription_id)
    configuration = await delivery_configurations.find(session, company_id, subscription.delivery_configuration_id)
    row = {column: getattr(subscription, column) for column in (
        "id", "company_id", "topic", "event_types", "delivery_configuration_id", "matching_criteria",
        "start_at", "end_at")}
    return row | {"mode": configuration.mode}, subscription.active, configuration.active


async def is_broadcast(session: AsyncSession, company_id: str, topic: str) -> bool:
    """Whether the topic reaches companies by monitored number (the catalog is every company's)."""
    found = await session.get(Topic, topic)
    return bool(found and found.broadcast)
