"""Dead letters: what a worker cannot handle (a message it cannot decode, a row PostgreSQL
refuses, a schedule it cannot compute) is set aside here with its reason and original bytes,
logged and counted, and the worker carries on with everything else. Retrying such input forever
would stall every tenant sharing the worker; dropping it silently would lose it.

`source` says where the payload came from: `kafka:<topic>` (an operator can requeue it to that
topic after a fix, with its original key) or `<kind>:<id>` for a database row."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import Counter

from shared.ids import new_id

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter("em_dead_letters_total", "Messages and rows set aside because a worker could not handle them",
                       ["service"])

UNAVAILABLE = Counter("em_unavailable_retries_total", "Batches retried because PostgreSQL or Kafka was unavailable",
                      ["service"])

KAFKA_SOURCE = "kafka:"

INSERT = """
INSERT INTO dead_letters (id, service, source, company_id, reason, payload, key)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


def printable(text: str, limit: int = 2000) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogates (an error message may quote the bad input)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def kafka_source(topic: str) -> str:
    return KAFKA_SOURCE + topic


async def set_aside(pool: asyncpg.Pool, *, service: str, source: str, reason: str, payload: bytes | None,
                    company_id: str | None = None, key: bytes | None = None) -> None:
    reason = printable(reason)
    DEAD_LETTERS.labels(service).inc()
    log.error("%s set aside a message from %s (company %s): %s", service, source, company_id, reason)
    await pool.execute(INSERT, new_id("dl"), service, source, printable(company_id or "", 200) or None, reason,
                       bytes(payload or b""), key)



class SetAsideOnce:
    """For rows a worker reads again and again (a stored subscription at every reload, a schedule
    at every tick): each version of a row is set aside once per process, not at every pass."""

    def __init__(self) -> None:
        self._done: set = set()

    async def __call__(self, version, pool: asyncpg.Pool, **details) -> None:
        if version in self._done:
            return
        await set_aside(pool, **details)
        self._done.add(version)

async def isolate_failures(items: list, handle: Callable[[list], Awaitable[None]],
                           alone: Callable[[Any, Exception], Awaitable[None]]) -> None:
    """`handle(items)` as one batch; when it fails for the content (not an outage, which is
    raised), halves are tried until the culprit is alone, and `alone(item, error)` deals with
    it. One bad item costs about log2(n) retries of its neighbours, never the whole batch."""
    if not items:
        return
    try:
        await handle(items)
    except Exception as exc:
        if is_unavailable(exc):
            raise
        if len(items) == 1:
            await alone(items[0], exc)
            return
        middle = len(items) // 2
        await isolate_failures(items[:middle], handle, alone)
        await isolate_failures(items[middle:], handle, alone)


def is_unavailable(exc: BaseException) -> bool:
    """The database or broker is down or restarting: the input is not at fault, so the work is
    retried (offsets stay put) instead of being set aside."""
    if isinstance(exc, ValueError):  # bad input, even where it is also an OSError (a refused address)
        return False
    if isinstance(exc, KafkaError):
        # Retriable: connection, leadership, timeouts. Not: a record too large, a corrupt record.
        return exc.retriable or isinstance(exc, KafkaTimeoutError)
    if isinstance(exc, asyncpg.InterfaceError):
        return not isinstance(exc, ValueError)  # a closed connection, not a value it could not encode
    return isinstance(exc, (
        OSError,  # ConnectionError and the socket errors under it
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
        asyncpg.exceptions.InsufficientResourcesError,  # disk full, too many connections
    ))


async def retry_while_unavailable(service: str, work: Callable[[], Awaitable[None]],
                                  max_delay: float = 5.0) -> None:
    """Run `work` until it succeeds, waiting out outages of PostgreSQL or Kafka with a growing
    pause. Anything else propagates: callers set aside per message before it gets here."""
    delay = 0.2
    while True:
        try:
            await work()
            return
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            UNAVAILABLE.labels(service).inc()
            log.warning("%s: database or broker unavailable (%s: %s); retrying in %.1fs",
                        service, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
