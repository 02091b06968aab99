"""A dispatcher stopped with a delivery still in flight past its drain budget does not lose it:
the delivery is cancelled, its offset is not committed, and the next dispatcher sends it."""

from __future__ import annotations

import asyncio
import signal

import pytest
from aiohttp import web

from services.devstack import wait_for_ready
from tests.conftest import eventually, realtime_configuration, settle, subscribe
from tests.delivery_helpers import publish, wait_for_status
from tests.receiver import ScriptedEndpoint


class HangingEndpoint(ScriptedEndpoint):
    """Hangs on every request until `answer` is set; then answers 200."""

    def __init__(self):
        super().__init__()
        self.answer = asyncio.Event()
        self.received: list[str] = []

    async def _answer(self, request: web.Request) -> web.Response:
        self.received.append((await request.json())["id"])
        await self.answer.wait()
        return web.Response(status=200)


@pytest.mark.timeout(180)
async def test_a_delivery_in_flight_at_shutdown_is_sent_by_the_next_dispatcher(stack, tenant, source):
    endpoint = HangingEndpoint()
    await endpoint.listen()
    usual = stack.services["dispatcher"]
    await asyncio.to_thread(usual.stop)
    # Its request outlasts the drain budget (3 s) and has no timeout to end it first.
    impatient = stack.start_service("dispatcher", {"EM_DRAIN_SECONDS": "3", "EM_REQUEST_TIMEOUT_SECONDS": "60"})
    try:
        await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], impatient)
        await subscribe(tenant, (await realtime_configuration(tenant, endpoint.url))["id"])
        await settle()
        [event_id] = await publish(source, tenant)
        async def in_flight():
            return endpoint.received == [event_id]

        await eventually(in_flight)
        await asyncio.to_thread(impatient.stop)
        # uvicorn re-raises SIGTERM once it has shut down; a kill after the stop wait would be -9.
        assert impatient.process.returncode == -signal.SIGTERM, "drained and exited by itself, not killed"
    finally:
        endpoint.answer.set()
        stack.start_service("dispatcher")
        await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], stack.services["dispatcher"])
    await wait_for_status(tenant, event_id, "delivered")
    assert endpoint.received == [event_id, event_id], "sent again by the next dispatcher, once"
    await endpoint.runner.cleanup()
