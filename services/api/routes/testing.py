"""Test events: send an event type's example through a configuration, the way a delivery goes."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.api.deps import SessionDep, SettingsDep, Writer
from services.api.schemas import Name, Strict, with_example
from services.api.store import testing as store
from shared.errors import ProblemError
from shared.kafka import Topics
from shared.messages import encode

router = APIRouter(tags=["delivery configurations"])

# Beyond the configuration's own timeout: the dispatcher's queue, a token fetch, the write back.
MARGIN_SECONDS = 10.0
POLL_SECONDS = 0.05


class TestEventRequest(Strict):
    __test__ = False  # not a pytest class
    model_config = with_example({"event_type": "message.delivered"})

    # Required, but checked after the configuration is found: another company's id is a 404 first.
    event_type: Name | None = Field(None, description="Required: the event type whose example is sent")
    topic: Name | None = Field(None, description="Needed only when several topics have this event type")


class TestAttempt(BaseModel):
    __test__ = False
    endpoint_id: str
    url: str
    started_at: datetime
    duration_ms: float
    http_status: int | None
    outcome: str
    error: str | None
    response_excerpt: str | None


class TestEventResult(BaseModel):
    __test__ = False
    id: str = Field(description="The test's id; the request's `webhook-id`")
    event: dict[str, Any] = Field(description="The document sent (with `\"test\": true`)")
    attempts: list[TestAttempt] = Field(description="One per active endpoint")


class TestTimedOut(ProblemError):
    __test__ = False
    status, title = 504, "Gateway Timeout"


@router.post("/v1/delivery-configurations/{configuration_id}/test", response_model=TestEventResult,
             summary="Send a test event",
             responses={504: {"description": "The dispatcher did not report the attempt in time"}},
             description="Sends the event type's example (`GET /v1/topics`) through the dispatcher, as a delivery "
                         "goes: the policy, authentication, signing, JSON or XML, to every active endpoint, once "
                         "(no retries), even while the configuration is inactive or paused. The request carries "
                         "`webhook-test: true` and the body `\"test\": true`; it is no event and no delivery, so "
                         "neither the dashboard nor event search counts it. Answers the attempts (status, "
                         "duration, response excerpt), or 504 when the dispatcher did not report within the "
                         "configuration's timeout and a margin.")
async def send_test(configuration_id: str, body: TestEventRequest, request: Request, session: SessionDep,
                    caller: Writer, settings: SettingsDep):
    configuration, row, message = await store.start(session, caller.company_id, configuration_id, body.event_type,
                                                    body.topic)
    timeout = (configuration.policy or {}).get("timeout_seconds") or settings.request_timeout_seconds
    test_id = row.id
    await session.commit()  # (rows expire here: only plain values are used below)
    await request.app.state.producer.send_and_wait(Topics.of(settings).deliveries, encode(message),
                                                   key=message["delivery_configuration_id"].encode())
    deadline = time.monotonic() + timeout + MARGIN_SECONDS
    while time.monotonic() < deadline:
        attempts = await store.attempts(session, caller.company_id, test_id)
        await session.rollback()  # each look sees what the dispatcher committed since
        if attempts is not None:
            return TestEventResult(id=test_id, event=message["event"], attempts=attempts)
        await asyncio.sleep(POLL_SECONDS)
    raise TestTimedOut(f"the dispatcher did not report test {test_id} within {timeout + MARGIN_SECONDS:g} s")
