"""Dead letters: what a worker cannot handle (a message it cannot decode, a row PostgreSQL
refuses, a schedule it cannot compute) is set aside here with its reason and original bytes,
logged and counted, and the worker carries on with everything else. Retrying such input forever
would stall every tenant sharing the worker; dropping it silently would lose it.

`source` says where the payload came from: `kafka:<topic>` (an operator can requeue it to that
topic after a fix, with its original key) or `<kind>:<id>` for a database row."""

from __future__ import annotations

import logging

import asyncpg
from prometheus_client import Counter

from shared.ids import new_id

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter("em_dead_letters_total", "Messages and rows set aside because a worker could not handle them",
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


async def set_aside(pool: asyncpg.Pool, *, service: str, source: str, reason: str, payload: bytes,
                    company_id: str | None = None, key: bytes | None = None) -> None:
    reason = printable(reason)
    DEAD_LETTERS.labels(service).inc()
    log.error("%s set aside a message from %s (company %s): %s", service, source, company_id, reason)
    await pool.execute(INSERT, new_id("dl"), service, source, printable(company_id or "", 200) or None, reason,
                       bytes(payload), key)
