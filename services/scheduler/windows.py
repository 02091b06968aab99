"""Which windows are due, and running them. `run_due_windows(now)` takes the clock as an
argument, so tests drive schedules without waiting for real hours to pass.

Each configuration is handled on its own: one whose schedule or row cannot be handled is
logged, counted, set aside once (a dead letter) and skipped; the others and the retention purge
go on. Only an unavailable database or broker fails the whole tick (retried at the next one)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from services.scheduler import buffer_files
from shared.deadletter import SetAsideOnce, is_unavailable
from shared.kafka import Topics
from shared.media import MediaStore
from shared.messages import encode, event_message, iso
from shared.operations import OperationalEvent, emit, operational_event
from shared.schedules import latest_fire_times

log = logging.getLogger(__name__)

FILES = Counter("em_scheduler_files_total", "Buffer files by outcome", ["status"])
CONFIGURATION_ERRORS = Counter("em_scheduler_configuration_errors_total",
                               "Scheduled configurations skipped in a tick because their schedule or row failed")

# After a long outage the missed windows beyond this many are merged into the first one.
MAX_CATCH_UP_WINDOWS = 500

SCHEDULED_CONFIGURATIONS = """
SELECT c.id, c.company_id, c.schedule::text AS schedule, c.created_at,
       (SELECT max(window_end) FROM buffer_files b WHERE b.delivery_configuration_id = c.id) AS last_end
FROM delivery_configurations c
WHERE c.mode = 'scheduled' AND c.active AND NOT c.paused
"""


def due_windows(schedule: dict, last_end: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """Windows `(start, end]` whose end (a fire time) is after `last_end` and not after `now`,
    contiguous from `last_end`. Bounded: only the latest MAX_CATCH_UP_WINDOWS fire times are
    computed (searching back from `now`); earlier missed ones are merged into the first window."""
    ends = latest_fire_times(schedule, last_end, now, MAX_CATCH_UP_WINDOWS)
    return list(zip([last_end, *ends], ends, strict=False))


class WindowRunner:
    def __init__(self, pool: asyncpg.Pool, media: MediaStore, producer: AIOKafkaProducer, topics: Topics,
                 api_base_url: str, retry_failed_after: float = 30.0):
        self.pool = pool
        self.retry_failed_after = retry_failed_after
        self.media = media
        self.producer = producer
        self.topics = topics
        self.api_base_url = api_base_url
        self.set_aside_once = SetAsideOnce()  # keyed by (configuration id, schedule as stored)

    async def run_due_windows(self, now: datetime) -> list[str]:
        """Claim and write every due window; returns the ids of the files this replica handled."""
        handled = []
        for configuration in await self.pool.fetch(SCHEDULED_CONFIGURATIONS):
            try:
                handled += await self.run_configuration(configuration, now)
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                await self.skip(configuration, exc)
        while file_id := await buffer_files.retake_unfinished(self.pool, failed_after=self.retry_failed_after):
            await self.write(file_id)
            handled.append(file_id)
        return handled

    async def run_configuration(self, configuration: asyncpg.Record, now: datetime) -> list[str]:
        handled = []
        schedule = orjson.loads(configuration["schedule"])
        for start, end in due_windows(schedule, configuration["last_end"] or configuration["created_at"], now):
            file_id = await buffer_files.claim_window(self.pool, configuration["company_id"],
                                                      configuration["id"], start, end)
            if file_id:
                await self.write(file_id)
                handled.append(file_id)
        return handled

    async def skip(self, configuration: asyncpg.Record, exc: Exception) -> None:
        """Count a configuration this tick could not handle, and report it once per stored schedule:
        the same broken schedule is not set aside again at every tick; a changed one is."""
        CONFIGURATION_ERRORS.inc()
        try:
            await self.set_aside_once((configuration["id"], configuration["schedule"]), self.pool,
                                      service="scheduler", source=f"delivery_configuration:{configuration['id']}",
                                      reason=f"{type(exc).__name__}: {exc}",
                                      payload=(configuration["schedule"] or "").encode(),
                                      company_id=configuration["company_id"])
        except Exception:
            log.exception("could not set aside configuration %s; trying again at the next tick", configuration["id"])

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
            error = f"{type(exc).__name__}: {exc}"
            failed = await buffer_files.mark_failed(self.pool, file_id, error)
            if failed is not None and failed["first_failure"]:
                await emit(self.producer, self.topics.events, operational_event(
                    OperationalEvent.BUFFER_FILE_FAILED, failed["company_id"], failed["delivery_configuration_id"],
                    buffer_file_id=file_id, error=error[:500]))

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
        except Exception as exc:
            # Configurations fail one by one inside the tick; what reaches here is an outage (or
            # a bug): the next tick tries again, and the retention purge is not stopped with it.
            if is_unavailable(exc):
                log.warning("scheduler tick failed: %s: %s", type(exc).__name__, exc)
            else:
                log.exception("scheduler tick failed")
        await asyncio.sleep(every)
