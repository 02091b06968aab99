"""W3C trace context through the real stack: a source's `traceparent` at ingest reaches every
delivery attempt (retries and republish too, which are rebuilt from PostgreSQL) as the same
trace with a span id of each attempt's own; and, with an OTLP endpoint configured, the spans
reach a collector (a small OTLP/HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gzip
import uuid

import pytest
from aiohttp import web

from services.devstack import free_port, wait_for_ready
from shared import tracing
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import wait_for_status
from tests.receiver import serve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SOURCE_TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


async def publish_traced(source, tenant, traceparent: str | None, count: int = 1) -> list[str]:
    ids = [f"ev-{uuid.uuid4().hex}" for _ in range(count)]
    headers = {"traceparent": traceparent} if traceparent is not None else {}
    response = await source.post("/v1/events", headers=headers, json={"events": [
        {"id": event_id, "topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}
        for event_id in ids]})
    assert response.status_code == 202, response.text
    return ids


def traceparents(requests) -> list[tracing.TraceParent]:
    sent = [{k.lower(): v for k, v in request.headers.items()}.get("traceparent") for request in requests]
    parsed = [tracing.parse(header) for header in sent]
    assert None not in parsed, sent
    return parsed


async def test_every_attempt_retries_and_republish_included_continues_the_sources_trace(tenant, source,
                                                                                          receiver):
    path = unique_path("traced")
    receiver.script(path, statuses=[503])  # the first attempt fails, the retry (from the database) succeeds
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    [event_id] = await publish_traced(source, tenant, SOURCE_TRACEPARENT)
    await wait_for_status(tenant, event_id, "delivered")
    first, retry = traceparents(await receiver.wait_for(path, 2))
    assert first.trace_id == retry.trace_id == TRACE
    assert len({first.parent_id, retry.parent_id, PARENT}) == 3, "each attempt is a span of its own"
    assert first.flags == retry.flags == "01"  # the source's sampling decision travels too

    response = await tenant.client.post(f"/v1/events/{event_id}/republish")
    assert response.status_code == 202, response.text
    republished = traceparents(await receiver.wait_for(path, 3))[2]
    assert republished.trace_id == TRACE
    assert republished.parent_id not in (first.parent_id, retry.parent_id, PARENT)


@pytest.mark.parametrize("sent", [None, "garbage", f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE.upper()}-{PARENT}-01"])
async def test_without_a_valid_traceparent_events_start_a_trace_and_are_delivered(tenant, source, receiver, sent):
    path = unique_path("untraced")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = await publish_traced(source, tenant, sent, count=2)  # never a 422 for a bad traceparent
    parsed = traceparents(await receiver.wait_for(path, 2))
    assert parsed[0].trace_id == parsed[1].trace_id, "one request, one trace"
    assert parsed[0].trace_id not in (TRACE, TRACE.upper(), "0" * 32)
    assert parsed[0].parent_id != parsed[1].parent_id
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")


async def test_a_test_event_gets_a_trace_of_its_own(tenant, receiver):
    path = unique_path("traced-test")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await settle()
    for _ in range(2):
        response = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/test",
                                            json={"event_type": "message.delivered"})
        assert response.status_code == 200, response.text
    first, second = traceparents(receiver.requests[path])
    assert first.trace_id != second.trace_id


@pytest.mark.parametrize("name", ["traceparent", "TraceState"])
async def test_a_company_cannot_set_the_trace_headers(tenant, receiver, name):
    body = {"name": "x", "mode": "realtime", "endpoints": [{"url": receiver.url("/x")}],
            "policy": {"headers": {name: SOURCE_TRACEPARENT}}}
    response = await tenant.client.post("/v1/delivery-configurations", json=body)
    assert response.status_code == 422, response.text
    assert any(e["loc"] == ["policy", "headers"] and "reserved" in e["msg"] for e in response.json()["errors"])


# --- export --------------------------------------------------------------------------------

class Collector:
    """An OTLP/HTTP trace collector: `POST /v1/traces` with an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[dict] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        self.runner = await serve(app, self.port)

    async def _receive(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                self.spans += [{"service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(), "parent_id": span.parent_span_id.hex()}
                               for span in scope_spans.spans]
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")


TRACED_SERVICES = ("ingest", "matcher", "dispatcher")


@pytest.fixture
async def exporting(stack):
    """Ingest, the matcher and the dispatcher restarted with an OTLP endpoint (spans exported
    every 100 ms); the usual ones are back afterwards."""
    collector = Collector()
    await collector.start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    for name in TRACED_SERVICES:
        await asyncio.to_thread(stack.services[name].stop)
        await asyncio.to_thread(wait_for_ready, stack.ports[name], stack.start_service(name, env))
    yield collector
    for name in TRACED_SERVICES:
        await asyncio.to_thread(stack.services[name].stop)
        await asyncio.to_thread(wait_for_ready, stack.ports[name], stack.start_service(name))
    await collector.runner.cleanup()


@pytest.mark.timeout(180)
async def test_with_an_otlp_endpoint_ingest_and_each_attempt_are_spans_of_the_sources_trace(
        exporting, tenant, source, receiver):
    path = unique_path("exported")
    receiver.script(path, statuses=[503])
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    trace_id = uuid.uuid4().hex  # this test's own: the collector sees nothing else of it
    [event_id] = await publish_traced(source, tenant, f"00-{trace_id}-{PARENT}-01")
    await wait_for_status(tenant, event_id, "delivered")
    sent = traceparents(await receiver.wait_for(path, 2))
    assert {s.trace_id for s in sent} == {trace_id}

    def spans(**wanted) -> list[dict]:
        return [s for s in exporting.spans if s["trace_id"] == trace_id and all(s[k] == v for k, v in wanted.items())]

    async def all_arrived():
        return (len(spans(name="webhook attempt")) == 2 and all(spans(span_id=s.parent_id) for s in sent)
                and spans(service="event-manager-matcher"))

    await eventually(all_arrived, timeout=20)
    # Ingest's request span is the child of the source's span; each attempt is the child of it,
    # and the matcher's receipt of the event is in the trace too (through aiokafka's headers).
    [ingest] = spans(service="event-manager-ingest", parent_id=PARENT)
    attempts = spans(name="webhook attempt")
    assert {a["parent_id"] for a in attempts} == {ingest["span_id"]}
    assert {a["service"] for a in attempts} == {"event-manager-dispatcher"}
    # What the endpoint received is the HTTP client span inside each attempt.
    for traceparent in sent:
        [client] = spans(span_id=traceparent.parent_id)
        assert client["parent_id"] in {a["span_id"] for a in attempts}
