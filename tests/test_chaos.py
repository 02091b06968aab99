"""Fault runs (`make chaos`): services killed with -9 while events flow. Nothing accepted may be
lost; duplicates are allowed (at-least-once) and counted."""

from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import pytest

from tests.conftest import eventually, realtime_configuration, second_dispatcher_replica, settle, subscribe, unique_path

pytestmark = pytest.mark.chaos

EVENTS = 3000


async def kill_and_restart(stack, name: str, after: float) -> None:
    await asyncio.sleep(after)
    service = stack.services[name]
    service.process.kill()
    await asyncio.to_thread(service.process.wait)
    await asyncio.sleep(1)
    service.start()


@pytest.mark.timeout(600)
async def test_killing_matcher_and_dispatcher_loses_nothing(stack, tenant, source, receiver):
    path = unique_path("chaos")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = [f"chaos-{uuid.uuid4().hex}" for _ in range(EVENTS)]

    async def publish_slowly():
        for start in range(0, EVENTS, 100):
            batch = [{"id": i, "topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id,
                      "data": {}} for i in ids[start:start + 100]]
            response = await source.post("/v1/events", json={"events": batch})
            assert response.status_code == 202
            await asyncio.sleep(0.1)

    await asyncio.gather(publish_slowly(), kill_and_restart(stack, "matcher", 1.0),
                         kill_and_restart(stack, "dispatcher", 2.0))

    async def all_arrived():
        return {r.json()["id"] for r in receiver.requests[path]} >= set(ids)

    try:
        await eventually(all_arrived, timeout=180, interval=1)
    except AssertionError:
        pass  # say which are missing, below
    received_ids = [r.json()["id"] for r in receiver.requests[path]]
    missing = set(ids) - set(received_ids)
    assert not missing, f"{len(missing)} accepted events never arrived"
    duplicates = len(received_ids) - len(set(received_ids))
    print(f"chaos: {EVENTS} events, {duplicates} duplicate deliveries after two kill -9")


@pytest.mark.timeout(300)
async def test_throttle_holds_with_two_dispatcher_replicas(stack, tenant, source, receiver):
    from tests.delivery_helpers import publish
    from tests.test_delivery_throttle import most_in_any_window

    async with second_dispatcher_replica(stack) as port:
        paths = [unique_path("two") for _ in range(4)]
        for path in paths:
            configuration = await realtime_configuration(tenant, receiver.url(path),
                                                         throttle={"max_requests": 5, "per_seconds": 1})
            await subscribe(tenant, configuration["id"], event_types=["message.sent"],
                            matching_criteria={"data": {"path": [path]}})
        await settle(port)
        for path in paths:
            await publish(source, tenant, count=15, data={"path": path})
        for path in paths:
            requests = await receiver.wait_for(path, 15, timeout=60)
            assert most_in_any_window([r.at for r in requests], 1.0) <= 5, path


@pytest.mark.timeout(300)
async def test_a_dispatcher_paused_under_load_parks_nothing_and_loses_nothing(stack, tenant, source, receiver):
    """A dispatcher that stops for seconds (a long pause of its VM or container) comes back to a
    backlog. It must send it, not take its own silence for a slow endpoint: a lane parks deliveries
    in the database when its host seems too slow to drain them (services/dispatcher/lanes.py)."""
    from tests.test_operations import metric

    path = unique_path("paused")
    receiver.script(path, delay=0.05)  # a healthy endpoint, 50 ms an answer: requests are in flight at the pause
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = [f"paused-{uuid.uuid4().hex}" for _ in range(EVENTS)]
    dispatcher = stack.services["dispatcher"].process

    async def publish_quickly():
        for start in range(0, EVENTS, 100):
            batch = [{"id": i, "topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id,
                      "data": {}} for i in ids[start:start + 100]]
            assert (await source.post("/v1/events", json={"events": batch})).status_code == 202
            await asyncio.sleep(0.05)

    async def pause_dispatcher(after: float, seconds: float):
        await asyncio.sleep(after)
        dispatcher.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            dispatcher.send_signal(signal.SIGCONT)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports['dispatcher']}") as client:
        parked_before = await metric(client, "em_dispatcher_deliveries_total", status="queued")
        await asyncio.gather(publish_quickly(), pause_dispatcher(after=1.0, seconds=4))
        async def all_arrived():
            return {r.json()["id"] for r in receiver.requests[path]} >= set(ids)

        await eventually(all_arrived, timeout=120, interval=0.5)
        assert await metric(client, "em_dispatcher_deliveries_total", status="queued") == parked_before, \
            "deliveries were parked after the dispatcher's own pause"
