"""shared/statuses.py and the live schema name the same statuses: the CHECK constraints, the
counting trigger and the partial indexes. A status added in code without a migration (or the
other way round) fails here."""

from __future__ import annotations

import re

import asyncpg
import pytest

from shared.statuses import (
    FAILING,
    UNFINISHED_FILES,
    URGENCY,
    AttemptOutcome,
    BufferFileStatus,
    DeliveryStatus,
    event_status,
)


@pytest.fixture
async def connection(stack):
    connection = await asyncpg.connect(stack.env["EM_DATABASE_URL"])
    yield connection
    await connection.close()


def quoted(sql: str) -> set[str]:
    """The string literals of an SQL text (each status is spelled 'like_this')."""
    return set(re.findall(r"'([a-z_]+)'", sql))


@pytest.mark.parametrize(("table", "constraint", "values"), [
    ("deliveries", "ck_deliveries_status", DeliveryStatus),
    ("delivery_attempts", "ck_delivery_attempts_outcome", AttemptOutcome),
    ("buffer_files", "ck_buffer_files_status", BufferFileStatus),
])
async def test_check_constraints_allow_exactly_the_known_values(connection, table, constraint, values):
    definition = await connection.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1 AND conrelid = $2::regclass",
        constraint, table)
    assert definition is not None, f"{table} has no constraint {constraint}"
    assert quoted(definition) == {value.value for value in values}


async def test_the_database_refuses_an_unknown_status(connection):
    with pytest.raises(asyncpg.CheckViolationError):
        await connection.execute(
            "INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status, "
            "attempt_count, succeeded_endpoints, created_at, updated_at) "
            "VALUES ('dlv_x', 'co_x', 'e', 's', 'dc', 'deliverd', 0, '{}', now(), now())")


async def test_the_counting_trigger_names_the_dashboard_sets(connection):
    source = await connection.fetchval("SELECT pg_get_functiondef('em_count_deliveries'::regproc)")
    # last_success_at from delivered rows, last_failure_at from failing ones, and nothing else.
    assert quoted(source) == {DeliveryStatus.DELIVERED.value} | {s.value for s in FAILING}
    failure_filter = re.search(r"max\(last_attempt_at\) FILTER \(WHERE status IN \(([^)]*)\)\)", source)
    assert quoted(failure_filter.group(1)) == {s.value for s in FAILING}


@pytest.mark.parametrize(("index", "values"), [
    ("ix_deliveries_buffered", {DeliveryStatus.BUFFERED}),
    ("ix_buffer_files_unfinished", UNFINISHED_FILES),
])
async def test_partial_indexes_name_the_named_sets(connection, index, values):
    definition = await connection.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", index)
    assert quoted(definition) == {value.value for value in values}


def test_every_delivery_status_has_an_urgency():
    assert set(URGENCY) == set(DeliveryStatus)
    assert event_status([]) == "unmatched"
    assert event_status(["delivered", "pending_retry", "handled"]) == "pending_retry"
    assert event_status(["handled", "delivered"]) == "delivered"
