"""Writing one window of a scheduled configuration into one JSON buffer file.

Exactly once, whatever the number of scheduler replicas: the window is claimed by inserting its
`buffer_files` row (unique per configuration and window end). Its deliveries are then claimed by
stamping them with the file id in one UPDATE, so an event committed while the file is being
written waits for the next window instead of being marked delivered without being in a file.

Empty windows get a row with status `empty` and no file (and no MSS-Messages event), so the
record of which windows ran stays complete without filling storage with empty files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

from shared.ids import new_id
from shared.media import MediaStore
from shared.messages import iso
from shared.statuses import BufferFileStatus, DeliveryStatus

log = logging.getLogger(__name__)

CLAIM_WINDOW = f"""
INSERT INTO buffer_files (id, company_id, delivery_configuration_id, window_start, window_end, status,
                          event_count, size_bytes, created_at, attempted_at)
VALUES ($1, $2, $3, $4, $5, '{BufferFileStatus.WRITING}', 0, 0, now(), now())
ON CONFLICT (delivery_configuration_id, window_end) DO NOTHING
RETURNING id
"""

CLAIM_DELIVERIES = f"""
UPDATE deliveries SET buffer_file_id = $1
WHERE delivery_configuration_id = $2 AND status = '{DeliveryStatus.BUFFERED}' AND buffer_file_id IS NULL
  AND created_at <= $3
"""

FILE_EVENTS = """
SELECT e.id, e.topic, e.event_type, e.company_id, e.subject, e.occurred_at, e.received_at, e.data,
       d.subscription_id
FROM deliveries d JOIN events e ON e.company_id = d.company_id AND e.id = d.event_id
WHERE d.buffer_file_id = $1
ORDER BY d.created_at, d.id
"""


def object_key(company_id: str, configuration_id: str, window_end: datetime, file_id: str) -> str:
    return f"{company_id}/{configuration_id}/{window_end.astimezone(UTC):%Y%m%dT%H%M%SZ}-{file_id}.json"


async def claim_window(pool: asyncpg.Pool, company_id: str, configuration_id: str, window_start: datetime | None,
                       window_end: datetime) -> str | None:
    """The new file's id if this replica got the window, None if another one did."""
    return await pool.fetchval(CLAIM_WINDOW, new_id("buf"), company_id, configuration_id, window_start, window_end)


@dataclass(frozen=True)
class WrittenFile:
    id: str
    company_id: str
    delivery_configuration_id: str
    object_key: str
    event_count: int
    size_bytes: int


async def write_file(pool: asyncpg.Pool, media: MediaStore, file_id: str) -> WrittenFile | None:
    """Fill a claimed window's file in media storage; None (and status `empty`) if the window had
    no events. Safe to call again after a failure: the claimed deliveries stay with the file.
    The caller announces the file, then calls `finish`."""
    row = await pool.fetchrow("SELECT * FROM buffer_files WHERE id = $1", file_id)
    await pool.execute(CLAIM_DELIVERIES, file_id, row["delivery_configuration_id"], row["window_end"])
    count = await pool.fetchval("SELECT count(*) FROM deliveries WHERE buffer_file_id = $1", file_id)
    if count == 0:
        await pool.execute("UPDATE buffer_files SET status = 'empty', error = NULL WHERE id = $1", file_id)
        return None
    key = object_key(row["company_id"], row["delivery_configuration_id"], row["window_end"], file_id)
    size = await _stream_to_storage(pool, media, key, row, count)
    return WrittenFile(file_id, row["company_id"], row["delivery_configuration_id"], key, count, size)


async def finish(pool: asyncpg.Pool, written: WrittenFile) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            f"UPDATE deliveries SET status = '{DeliveryStatus.DELIVERED}', delivered_at = now(), updated_at = now() "
            f"WHERE buffer_file_id = $1 AND status = '{DeliveryStatus.BUFFERED}'", written.id)
        await connection.execute(
            f"UPDATE buffer_files SET status = '{BufferFileStatus.STORED}', event_count = $2, size_bytes = $3, "
            "object_key = $4, error = NULL WHERE id = $1",
            written.id, written.event_count, written.size_bytes, written.object_key)


async def _stream_to_storage(pool: asyncpg.Pool, media: MediaStore, key: str, row, count: int) -> int:
    header = {
        "delivery_configuration_id": row["delivery_configuration_id"],
        "window_start": iso(row["window_start"]) if row["window_start"] else None,
        "window_end": iso(row["window_end"]),
        "event_count": count,
    }
    # The header's closing brace is replaced by the events array, written a chunk at a time.
    opening = orjson.dumps(header)[:-1] + b',"events":['
    size = 0
    async with media.writer(key) as writer, pool.acquire() as connection, connection.transaction():
        await writer.write(opening)
        size += len(opening)
        chunk, first = bytearray(), True
        async for event in connection.cursor(FILE_EVENTS, row["id"], prefetch=2000):
            if not first:
                chunk += b","
            first = False
            chunk += orjson.dumps({
                "id": event["id"], "topic": event["topic"], "event_type": event["event_type"],
                "company_id": event["company_id"], "subject": event["subject"],
                "occurred_at": iso(event["occurred_at"]), "received_at": iso(event["received_at"]),
                "data": event["data"], "subscription_id": event["subscription_id"],
            })
            if len(chunk) >= 1 << 20:
                await writer.write(bytes(chunk))
                size += len(chunk)
                chunk = bytearray()
        chunk += b"]}"
        await writer.write(bytes(chunk))
        size += len(chunk)
    return size


MARK_FAILED = f"""
UPDATE buffer_files b SET status = '{BufferFileStatus.FAILED}', error = $2, attempted_at = now()
FROM buffer_files before WHERE b.id = $1 AND before.id = b.id
RETURNING b.company_id, b.delivery_configuration_id, before.error IS NULL AS first_failure
"""


async def mark_failed(pool: asyncpg.Pool, file_id: str, error: str):
    """The file's company and configuration, and whether this is its first failure (a failed
    file is retried until it is stored; its error is kept meanwhile)."""
    return await pool.fetchrow(MARK_FAILED, file_id, error[:500])


RETAKE = f"""
UPDATE buffer_files SET status = '{BufferFileStatus.WRITING}', attempted_at = now()
WHERE id = (
    SELECT id FROM buffer_files
    WHERE (status = '{BufferFileStatus.FAILED}' AND attempted_at < now() - make_interval(secs => $1))
       OR (status = '{BufferFileStatus.WRITING}' AND attempted_at < now() - make_interval(secs => $2))
    ORDER BY window_end LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


async def retake_unfinished(pool: asyncpg.Pool, failed_after: float = 30, stale_after: float = 600) -> str | None:
    """A failed file (retried after a pause), or one whose writer vanished mid-way."""
    return await pool.fetchval(RETAKE, failed_after, stale_after)
