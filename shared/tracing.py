"""W3C Trace Context (https://www.w3.org/TR/trace-context/) for events, and OpenTelemetry span
export when an OTLP endpoint is configured.

Propagation is always on. Ingest takes the source's `traceparent` (or starts a new trace when it
is absent or invalid, as the specification says: never a 422); the event carries it through
Kafka (the `traceparent` field of the event and delivery messages, shared/messages.py; with
export on, aiokafka's instrumentation adds Kafka headers too) and PostgreSQL
(`events.trace_parent`, for retries, republish and replay, which are rebuilt from the database;
the matcher starts a trace for an event that has none, such as Event Manager's own); every
delivery attempt sends a `traceparent` of the same trace with a span id of its own, and test
events a new trace each. `tracestate` is not carried. Without export this costs a regular
expression and a few random bits per attempt: the OpenTelemetry SDK is not even imported.

Export is on when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and `OTEL_SDK_DISABLED` is not `true`. Spans go over
OTLP/HTTP (protobuf, port 4318 by convention), the SDK's other `OTEL_*` variables apply as
documented (headers, timeout, sampler, `OTEL_SERVICE_NAME`; default `event-manager-<service>`).
`setup` then installs the SDK and instruments FastAPI, aiokafka, asyncpg and the aiohttp client,
and each delivery attempt is a span whose parent is the event's context. That is several spans
per delivery (the attempt, its HTTP request, the recorder's queries, the Kafka receipt): with
every trace sampled the dispatcher's CPU per delivery roughly doubled in the benchmark (about
+0.7 ms), so at volume sample a share, e.g. `OTEL_TRACES_SAMPLER=parentbased_traceidratio`,
`OTEL_TRACES_SAMPLER_ARG=0.01` (a source's sampled flag is still honoured).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

HEADER = "traceparent"
# version-trace_id-parent_id-flags, lowercase hex only. Version 00 (what Event Manager itself
# writes, so the common case) is exactly this; a later version may append fields after a dash;
# version ff is forbidden.
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ANY_VERSION = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16
# The flags of a trace Event Manager starts: sampled only when this process records spans.
NOT_SAMPLED, SAMPLED = "00", "01"


class TraceParent(NamedTuple):
    trace_id: str
    parent_id: str
    flags: str

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse(header: Any) -> TraceParent | None:
    """The header's context, or None when it is absent or not a valid `traceparent` (a value read
    from a message or a row may be anything: never an error, never an HTTP header)."""
    if not header or not isinstance(header, str):
        return None
    match = _VERSION_00.fullmatch(header)
    if match is None:
        return _parse_other(header)
    trace_id, parent_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return TraceParent(trace_id, parent_id, _known_flags(flags))


def _known_flags(flags: str) -> str:
    """Only the flag version 00 defines (sampled): we pass the context on as version 00, whose
    spec says unknown flag bits must be zero, not copied from a source."""
    return SAMPLED if int(flags, 16) & 0x01 else NOT_SAMPLED


def _parse_other(header: str) -> TraceParent | None:
    """Surrounding whitespace, or a later version (parsed as far as version 00 goes)."""
    header = header.strip(" \t")
    match = _ANY_VERSION.match(header)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if len(header) != 55 and (version == "00" or header[55] != "-"):
        return None  # version 00 is exactly 55 characters; a later one may only add "-..." fields
    return TraceParent(trace_id, parent_id, _known_flags(flags))


def valid_or_none(header: Any) -> str | None:
    """The header as version 00 when it is a valid `traceparent`, else None (a value read from a
    message or a row that is not one must never reach an HTTP header)."""
    parent = parse(header)
    return parent.header() if parent else None


def new_trace() -> str:
    trace_id = random.getrandbits(128) or 1
    return f"00-{trace_id:032x}-{_span_id()}-{_root_flags(trace_id)}"


def _root_flags(trace_id: int) -> str:
    """A trace Event Manager starts is sampled only when this process exports and its sampler
    (`OTEL_TRACES_SAMPLER`, as for every root span) keeps a new trace of this id."""
    if _sampler is None:
        return NOT_SAMPLED
    return SAMPLED if _sampler.should_sample(None, trace_id, "event").decision.is_sampled() else NOT_SAMPLED


def attempt_header(stored: str | None) -> str:
    """The `traceparent` of one delivery attempt: the event's trace with a fresh span id (a
    new trace when the event has none, as a test event)."""
    parent = parse(stored)
    if parent is None:
        return new_trace()
    return f"00-{parent.trace_id}-{_span_id()}-{parent.flags}"


def _span_id() -> str:
    # Not a secret: the OpenTelemetry SDK draws its ids the same way. Zero is invalid.
    return f"{random.getrandbits(64) or 1:016x}"


# --- what the services call ---------------------------------------------------------------

_tracer = None  # an OpenTelemetry tracer once `setup` found export configured
_sampler = None  # its provider's sampler, which decides whether a trace we start is sampled


def export_configured(environ=os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def exporting() -> bool:
    return _tracer is not None


def incoming(header: str | None) -> str:
    """The trace context an ingested request's events carry: when exporting, the request's own
    span (FastAPI's instrumentation made it the child of the source's `traceparent`); otherwise
    the source's context unchanged, or a new trace."""
    if _tracer is not None:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return _header_of(context)
    return valid_or_none(header) or new_trace()


def attempt(stored: str | None, headers: dict) -> contextlib.AbstractContextManager:
    """Around one delivery attempt: sets `headers["traceparent"]` to the attempt's own context.
    When exporting, the context manager is a span (child of the event's context) that the
    attempt's HTTP request runs in; `record` notes its outcome."""
    if _tracer is None:
        headers[HEADER] = attempt_header(stored)
        return _NO_SPAN
    return _traced_attempt(stored, headers)


_NO_SPAN = contextlib.nullcontext()


@contextlib.contextmanager
def _traced_attempt(stored: str | None, headers: dict) -> Iterator[Any]:
    with _tracer.start_as_current_span("webhook attempt", context=_parent_context(stored)) as span:
        headers[HEADER] = _header_of(span.get_span_context())
        yield span


def record(span: Any, http_status: int | None, error: str | None) -> None:
    """An attempt's outcome on its span (nothing when not exporting)."""
    if span is None:
        return
    from opentelemetry.trace import StatusCode

    if http_status is not None:
        span.set_attribute("http.response.status_code", http_status)
    if error:
        span.set_status(StatusCode.ERROR, error)


def _parent_context(stored: str | None):
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    parent = parse(stored)
    if parent is None:  # a new root, whatever happens to be current
        return Context()
    return set_span_in_context(NonRecordingSpan(SpanContext(
        int(parent.trace_id, 16), int(parent.parent_id, 16), is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)))), Context())


def _header_of(context) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def setup(service: str, app=None) -> bool:
    """When an OTLP endpoint is configured: the SDK with its OTLP/HTTP exporter, and the
    instrumentation of aiokafka, asyncpg, the aiohttp client and (given) the FastAPI app. Called
    once per process as the service's app is built, before it serves anything. Returns whether
    export is on."""
    global _tracer, _sampler
    if not export_configured():
        return False
    if _tracer is None:
        try:
            _tracer, _sampler = _install_sdk(service)
        except ImportError as exc:  # a clear start-up failure, not a service that silently exports nothing
            raise SystemExit(f"OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: {exc}") from exc
    if app is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Probes and scrapes would drown the traces that matter.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return True


def _install_sdk(service: str):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"event-manager-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads OTEL_EXPORTER_OTLP_*
    trace.set_tracer_provider(provider)
    AIOKafkaInstrumentor().instrument()
    AsyncPGInstrumentor().instrument()
    # ...but not a span for each row a cursor yields (it wraps CursorIterator.__anext__): the
    # matcher reads every monitored number through a cursor when it starts, the scheduler a
    # window's events; with a large set the matcher could not start within a minute.
    import asyncpg.cursor
    from opentelemetry.instrumentation.utils import unwrap

    unwrap(asyncpg.cursor.CursorIterator, "__anext__")
    AioHttpClientInstrumentor().instrument()
    return trace.get_tracer("event_manager"), provider.sampler
