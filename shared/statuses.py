"""Every status a delivery, an attempt or a buffer file can have, in one place.

The values are also spelled in SQL: a CHECK constraint on `deliveries.status` (migrations 0007, 0008),
the partial index `ix_deliveries_buffered`, the counting trigger `em_count_deliveries` (0004)
and a few queries, which interpolate the named sets below with `sql_list()`.
tests/test_statuses.py reads the live schema and fails if it names a value or a set that
differs from this module."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting for the dispatcher (now, or parked until next_attempt_at)
    PENDING_RETRY = "pending_retry"  # an attempt failed; the next is due at next_attempt_at
    BUFFERED = "buffered"  # a scheduled configuration's delivery, waiting for its next file
    HELD = "held"  # its configuration is paused: nothing is sent until it is resumed
    DELIVERED = "delivered"  # every endpoint answered 2xx, or its buffer file was stored
    FAILED = "failed"  # given up: permanent error or retries exhausted; a company may republish
    HANDLED = "handled"  # a company marked it handled; nothing more is attempted


# Still owed to the company: retention keeps the event, search shows it as in progress.
UNSETTLED = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.PENDING_RETRY, DeliveryStatus.BUFFERED,
                       DeliveryStatus.HELD})
# Nothing more happens unless someone republishes it.
SETTLED = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.HANDLED})
# Counted as a failure on the dashboard (last_failure_at of the counting trigger).
FAILING = frozenset({DeliveryStatus.FAILED, DeliveryStatus.PENDING_RETRY})
# The dispatcher never overwrites these when it records a result.
FINAL_FOR_DISPATCHER = frozenset({DeliveryStatus.HANDLED})

# An event's status is that of its most pressing delivery, in this order.
URGENCY = (DeliveryStatus.FAILED, DeliveryStatus.PENDING_RETRY, DeliveryStatus.QUEUED, DeliveryStatus.HELD,
           DeliveryStatus.BUFFERED, DeliveryStatus.DELIVERED, DeliveryStatus.HANDLED)
UNMATCHED = "unmatched"  # the status of an event no subscription matched (not a delivery status)


def event_status(statuses) -> str:
    if not statuses:
        return UNMATCHED
    return min((DeliveryStatus(s) for s in statuses), key=URGENCY.index).value


class AttemptOutcome(StrEnum):
    SUCCESS = "success"  # 2xx
    RETRYABLE = "retryable"  # timeout, connection error, 408/429/5xx: worth another try
    FAILED = "failed"  # a 4xx, a redirect, a refused URL: another try would get the same answer


class BufferFileStatus(StrEnum):
    WRITING = "writing"
    STORED = "stored"
    FAILED = "failed"
    EMPTY = "empty"


UNFINISHED_FILES = frozenset({BufferFileStatus.WRITING, BufferFileStatus.FAILED})


def sql_list(statuses) -> str:
    """`'a', 'b'` for an SQL `IN (...)`, in a stable order (the values are ours, never input)."""
    return ", ".join(f"'{s.value}'" for s in sorted(statuses))
