"""Which windows are due, and running them. `run_due_windows(now)` takes the clock as an
argument, so tests drive schedules without waiting for real hours to pass."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from services.scheduler import buffer_files
from shared.kafka import Topics
from shared.media import MediaStore
from shared.messages import encode, event_message, iso
from shared.schedules import InvalidSchedule, next_fire_time

log = logging.getLogger(__name__)

FILES = Counter("em_scheduler_files_total", "Buffer files by outcome", ["status"])

# After a long outage the missed windows beyond this many are merged into the first one.
MAX_CATCH_UP_WINDOWS = 500

SCHEDULED_CONFIGURATIONS = """
SELECT c.id, c.company_id, c.schedule, c.created_at,
       (SELECT max(window_end) FROM buffer_files b WHERE b.delivery_configuration_id = c.id) AS last_end
FROM delivery_configurations c
WHERE c.mode = 'scheduled' AND c.active
"""


def due_windows(schedule: dict, last_end: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """Windows `(start, end]` whose end (a fire time) is after `last_end` and not after `now`."""
    ends = []
    moment = last_end
    while True:
        moment = next_fire_time(schedule, moment)
        if moment > now:
            break
        ends.append(moment)
        if len(ends) > MAX_CATCH_UP_WINDOWS:
            del ends[0]
    windows, start = [], last_end
    for end in ends:
        windows.append((start, end))
        start = end
    return windows


class WindowRunner:
    def __init__(self, pool: asyncpg.Pool, media: MediaStore, producer: AIOKafkaProducer, topics: Topics,
                 api_base_url: str, retry_failed_after: float = 30.0):
        self.pool = pool
        self.retry_failed_after = retry_failed_after
        self.media = media
        self.producer = producer
        self.topics = topics
        self.api_base_url = api_base_url

    async def run_due_windows(self, now: datetime) -> list[str]:
        """Claim and write every due window; returns the ids of the files this replica handled."""
        handled = []
        for configuration in await self.pool.fetch(SCHEDULED_CONFIGURATIONS):
            try:
                windows = due_windows(configuration["schedule"],
                                      configuration["last_end"] or configuration["created_at"], now)
            except InvalidSchedule as exc:
                log.error("configuration %s has an invalid schedule: %s", configuration["id"], exc)
                continue
            for start, end in windows:
                file_id = await buffer_files.claim_window(self.pool, configuration["company_id"],
                                                          configuration["id"], start, end)
                if file_id:
                    await self.write(file_id)
                    handled.append(file_id)
        while file_id := await buffer_files.retake_unfinished(self.pool, failed_after=self.retry_failed_after):
            await self.write(file_id)
            handled.append(file_id)
        return handled

    async def write(self, file_id: str) -> None:
        try:
            written = await buffer_files.write_file(self.pool, self.media, file_id)
            if written is None:
                FILES.labels("empty").inc()
                return
            await self.announce(written)
            await buffer_files.finish(self.pool, written)
            FILES.labels("stored").inc()
        except Exception as exc:
            log.exception("writing buffer file %s failed", file_id)
            FILES.labels("failed").inc()
            await buffer_files.mark_failed(self.pool, file_id, f"{type(exc).__name__}: {exc}")

    async def announce(self, written: buffer_files.WrittenFile) -> None:
        """MSS-Messages / file.stored for the file's company, with a stable id: announcing the
        same file twice (after a crash) is deduplicated by the matcher."""
        now = iso(datetime.now().astimezone())
        data = {
            "buffer_file_id": written.id,
            "url": f"{self.api_base_url}/v1/buffer-files/{written.id}/download",
            "event_count": written.event_count,
            "size_bytes": written.size_bytes,
            "delivery_configuration_id": written.delivery_configuration_id,
        }
        message = event_message(f"{written.id}.stored", "MSS-Messages", "file.stored", written.company_id,
                                written.id, now, now, data)
        await self.producer.send_and_wait(self.topics.events, encode(message), key=written.company_id.encode())


async def tick_forever(runner: WindowRunner, every: float) -> None:
    while True:
        try:
            await runner.run_due_windows(datetime.now().astimezone())
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("scheduler tick failed: %s", exc)
        await asyncio.sleep(every)
