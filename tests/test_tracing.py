"""W3C `traceparent` parsing and the per-attempt context (shared/tracing.py), without the SDK."""

from __future__ import annotations

import pytest

from shared import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


@pytest.mark.parametrize("header, expected", [
    (VALID, (TRACE, PARENT, "01")),
    (f" {VALID}\t", (TRACE, PARENT, "01")),  # optional whitespace around a header value
    (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, "00")),
    # A later version is parsed as far as 00 goes; it may only add fields after a dash.
    (f"01-{TRACE}-{PARENT}-01-more", (TRACE, PARENT, "01")),
    # Passed on as version 00: only its sampled flag survives, unknown flag bits are zeroed.
    (f"cc-{TRACE}-{PARENT}-09", (TRACE, PARENT, "01")),
    (f"00-{TRACE}-{PARENT}-ff", (TRACE, PARENT, "01")),
    (f"00-{TRACE}-{PARENT}-fe", (TRACE, PARENT, "00")),
])
def test_valid_headers_parse(header, expected):
    assert tracing.parse(header) == expected


@pytest.mark.parametrize("header", [
    None, "", "garbage", VALID[:-1], VALID + "0",
    f"00-{TRACE}-{PARENT}-01-more",  # version 00 has exactly four fields
    f"01-{TRACE}-{PARENT}-01more",  # a later version's extra fields follow a dash
    f"ff-{TRACE}-{PARENT}-01",  # version ff is forbidden
    f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE.upper()}-{PARENT}-01",  # lowercase hex only
    f"00-{TRACE}-{PARENT}-0g",
    f"0-{TRACE}-{PARENT}-01",
    f"00_{TRACE}_{PARENT}_01",
    f"00-{TRACE}-{PARENT}-01\r\nx-injected: 1",
])
def test_invalid_headers_do_not_parse(header):
    assert tracing.parse(header) is None


def test_valid_or_none_normalises_to_version_00_and_refuses_non_strings():
    assert tracing.valid_or_none(f"01-{TRACE}-{PARENT}-01-more") == f"00-{TRACE}-{PARENT}-01"
    assert tracing.valid_or_none(VALID) == VALID
    for value in (None, 42, ["00"], "x" * 1000):
        assert tracing.valid_or_none(value) is None


def test_a_trace_started_while_exporting_is_sampled_as_the_sampler_decides(monkeypatch):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

    for sampler, flags in ((ALWAYS_ON, {"01"}), (ALWAYS_OFF, {"00"}), (TraceIdRatioBased(0.5), {"00", "01"})):
        monkeypatch.setattr(tracing, "_sampler", sampler)
        assert {tracing.parse(tracing.new_trace()).flags for _ in range(200)} == flags


def test_a_new_trace_is_valid_and_not_sampled():
    headers = {tracing.new_trace() for _ in range(100)}
    assert len(headers) == 100
    for header in headers:
        parsed = tracing.parse(header)
        assert parsed is not None and parsed.flags == "00"


def test_each_attempt_continues_the_trace_with_its_own_span_id():
    attempts = [tracing.parse(tracing.attempt_header(VALID)) for _ in range(50)]
    assert {a.trace_id for a in attempts} == {TRACE}
    assert {a.flags for a in attempts} == {"01"}
    span_ids = {a.parent_id for a in attempts}
    assert len(span_ids) == 50 and PARENT not in span_ids


# A malformed message or row (any type) starts a trace, never an error.
@pytest.mark.parametrize("stored", [None, "", "not a traceparent", 42, ["00"], {"v": 1}])
def test_an_attempt_without_a_valid_stored_context_starts_a_trace(stored):
    first, second = tracing.parse(tracing.attempt_header(stored)), tracing.parse(tracing.attempt_header(stored))
    assert first is not None and second is not None and first.trace_id != second.trace_id


def test_without_export_the_attempt_sets_the_header_and_no_span():
    assert not tracing.exporting()
    headers: dict = {"traceparent": "a company's own value"}
    with tracing.attempt(VALID, headers) as span:
        assert span is None
    tracing.record(span, 200, None)
    parsed = tracing.parse(headers["traceparent"])
    assert parsed.trace_id == TRACE and parsed.parent_id != PARENT


def test_ingest_keeps_a_valid_context_and_starts_one_otherwise():
    assert tracing.incoming(VALID) == VALID
    assert tracing.incoming(f"01-{TRACE}-{PARENT}-01-x") == VALID
    started = tracing.parse(tracing.incoming(f"00-{'0' * 32}-{PARENT}-01"))
    assert started is not None and started.trace_id != "0" * 32


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, True),
])
def test_export_is_configured_by_the_standard_variables(environ, expected):
    assert tracing.export_configured(environ) is expected


def test_without_an_endpoint_no_service_imports_the_sdk():
    """Importing every service's app (which calls `setup`) loads no OpenTelemetry SDK module."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    apps = ", ".join(f"services.{name}.app" for name in ("api", "ingest", "matcher", "dispatcher", "scheduler"))
    script = (f"import sys, {apps}; from shared import tracing; "
              "print(tracing.exporting(), sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk') "
              "or m.startswith('opentelemetry.instrumentation')))")
    result = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "[]"], result.stdout + result.stderr


CURSOR_SCRIPT = """
import asyncio, sys
import asyncpg
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shared import tracing

assert tracing.setup("test")
exporter = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))

async def main():
    connection = await asyncpg.connect(sys.argv[1])
    async with connection.transaction():
        rows = [row async for row in connection.cursor("SELECT generate_series(1, 500)", prefetch=100)]
    await connection.close()
    print(len(rows), len(exporter.get_finished_spans()))

asyncio.run(main())
"""


def test_a_cursor_read_while_exporting_is_not_a_span_per_row(stack):
    """The asyncpg instrumentation makes a span of each row a cursor yields; the matcher reads
    every monitored number through a cursor when it starts, and with a large set it could not
    start within a minute."""
    import os
    import subprocess
    import sys

    from services.devstack import free_port
    from shared.db import asyncpg_dsn

    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    result = subprocess.run([sys.executable, "-c", CURSOR_SCRIPT, asyncpg_dsn(stack.env["EM_DATABASE_URL"])],
                            env=environ, capture_output=True, text=True, timeout=120)
    rows, spans = (int(n) for n in result.stdout.split()[:2])
    assert rows == 500 and spans < 10, (rows, spans, result.stderr[-2000:])


@pytest.mark.parametrize("sent, kept", [(VALID, True), (None, False), ("garbage\r\nx: 1", False)])
def test_the_matcher_stores_and_publishes_the_events_context_or_a_new_one(sent, kept):
    """Each stored event and each of its delivery messages carry one valid traceparent: the
    event's own, or one the matcher starts (Event Manager's own events, invalid values), so that
    retries rebuilt from the row share it."""
    from services.matcher.index import Route, SubscriptionIndex
    from services.matcher.plan import plan_batch
    from shared.messages import event_message

    index = SubscriptionIndex()
    index.replace_company_routes("co_a", [Route(f"sub_{n}", "co_a", "SCG-Message", f"dc_{n}", True, None, 0.0, None,
                                                None) for n in (1, 2)])
    event = event_message("e1", "SCG-Message", "message.sent", "co_a", None, "2026-11-27T12:00:00Z",
                          "2026-11-27T12:00:00Z", {}, sent)
    plan = plan_batch(index, [event])
    [row] = plan.events
    published = {message["traceparent"] for _, message in plan.outgoing[("co_a", "e1")]}
    assert published == {row.trace_parent} and tracing.parse(row.trace_parent) is not None
    assert (row.trace_parent == VALID) is kept
