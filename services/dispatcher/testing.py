"""Test events (`POST /v1/delivery-configurations/{id}/test`): the api writes a `test_deliveries`
row and publishes a delivery message flagged `test`; the dispatcher sends it here, once, to each
active endpoint, through the same steps a delivery takes (URL check, credentials, policy headers,
signing, JSON or XML, lane and timeout), and writes the attempts to that row. No delivery row, no
retry, no circuit-breaker or endpoint-health record: a test says how the endpoint answers now and
changes nothing about real deliveries. The request carries `webhook-test: true` and the body
`"test": true`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson

from services.dispatcher.auth import TokenError
from services.dispatcher.formats import render
from services.dispatcher.sender import Attempt, failed_attempt
from shared.netguard import UrlRefused, check_url_syntax

if TYPE_CHECKING:
    from services.dispatcher.configs import DeliveryConfiguration
    from services.dispatcher.worker import Dispatcher

log = logging.getLogger(__name__)
TEST_HEADER = "webhook-test"


async def send_test(dispatcher: Dispatcher, message: dict) -> None:
    configuration = await dispatcher.configurations.get(message["delivery_configuration_id"])
    attempts: list[dict] = []
    if configuration is not None:
        body, content_type = render(message["event"], configuration.format)
        endpoints = [e for e in configuration.endpoints if e.get("active", True)]
        attempts = list(await asyncio.gather(*(_shown_attempt(dispatcher, configuration, endpoint, body, content_type,
                                                              message["delivery_id"]) for endpoint in endpoints)))
    await dispatcher.recorder.pool.execute(
        "UPDATE test_deliveries SET attempts = $2::jsonb, completed_at = now() WHERE id = $1",
        message["delivery_id"], orjson.dumps(attempts).decode())


async def _shown_attempt(dispatcher: Dispatcher, configuration: DeliveryConfiguration, endpoint: dict, body: bytes,
                         content_type: str, delivery_id: str) -> dict:
    try:
        attempt = await _attempt(dispatcher, configuration, endpoint, body, content_type, delivery_id)
    except Exception as exc:  # reported to the caller, never retried
        log.warning("test delivery %s to endpoint %s failed: %s", delivery_id, endpoint["id"], exc)
        attempt = failed_attempt(endpoint, type(exc).__name__, retryable=False)
    return _shown(attempt)


async def _attempt(dispatcher: Dispatcher, configuration: DeliveryConfiguration, endpoint: dict, body: bytes,
                   content_type: str, delivery_id: str) -> Attempt:
    try:
        check_url_syntax(endpoint["url"], dispatcher.settings.require_https)
    except UrlRefused as exc:
        return failed_attempt(endpoint, f"endpoint URL refused: {exc}", retryable=False)
    try:
        authorization = await dispatcher.credentials.authorization(configuration)
    except TokenError as exc:
        return failed_attempt(endpoint, str(exc), exc.retryable)
    headers = dispatcher.request_headers(configuration, content_type, delivery_id, body, authorization)
    headers[TEST_HEADER] = "true"
    lane = dispatcher.lanes.of(configuration.company_id, endpoint["url"])
    return await dispatcher.send(lane, endpoint, body, headers, None, configuration)


def _shown(attempt: Attempt) -> dict:
    return {"endpoint_id": attempt.endpoint_id, "url": attempt.url, "started_at": attempt.started_at.isoformat(),
            "duration_ms": round(attempt.duration_ms, 1), "http_status": attempt.http_status,
            "outcome": str(attempt.outcome), "error": attempt.error, "response_excerpt": attempt.response_excerpt}
