"""Delivery lifecycle against the real stack: pause holds without loss and resume delivers each
held event once; a 410 disables an endpoint at once, an endpoint failing for longer than the
disable time is disabled, and the company hears of both through its own EM-Operations
subscription, never through the configuration the notice is about."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from services.api.changes import OUTBOX_PAUSE_LOCK
from services.devstack import wait_for_ready
from shared.db import asyncpg_dsn
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, sentinel, wait_for_status

OPERATIONS = "EM-Operations"


async def held_count(tenant, configuration_id: str) -> int:
    page = (await tenant.client.get("/v1/events", params={
        "status": "held", "delivery_configuration_id": configuration_id, "limit": 200})).json()
    return len(page["data"])


async def test_a_paused_configuration_holds_and_resume_delivers_each_event_once(tenant, other_tenant, source,
                                                                                receiver):
    path, other_path = unique_path("paused"), unique_path("flowing")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await subscribe(other_tenant, (await realtime_configuration(other_tenant, receiver.url(other_path)))["id"])
    paused = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    await settle()

    ids = await publish(source, tenant, count=100)
    [flowing] = await publish(source, other_tenant)
    assert (await receiver.wait_for(other_path, 1))[0].json()["id"] == flowing, "another company's keep flowing"
    await eventually(lambda: _equals(held_count(tenant, configuration["id"]), 100), timeout=60)
    assert receiver.requests[path] == [], "nothing is sent while paused"
    event = (await tenant.client.get(f"/v1/events/{ids[0]}")).json()
    assert event["status"] == "held"

    resumed = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["released"] == 100 and resumed.json()["configuration"]["paused"] is False
    await receiver.wait_for(path, 100, timeout=60)
    last = await sentinel(source, tenant, receiver, path)
    arrived = [request.json()["id"] for request in receiver.requests[path]]
    assert sorted(arrived) == sorted([*ids, last]), "every held event once, none twice"
    for event_id in (ids[0], ids[-1]):
        await wait_for_status(tenant, event_id, "delivered")


async def _equals(value, wanted) -> bool:
    return await value == wanted


async def operations_subscription(tenant, receiver) -> tuple[str, dict]:
    """A configuration that receives the company's operational events."""
    path = unique_path("operations")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"], topic=OPERATIONS)
    return path, configuration


async def test_a_410_disables_the_endpoint_and_the_company_is_told_elsewhere(tenant, other_tenant, source, receiver):
    gone_path, healthy_path = unique_path("gone"), unique_path("healthy")
    receiver.script(gone_path, default=410)
    body = {"name": "two-endpoints", "mode": "realtime", "active": True,
            "endpoints": [{"url": receiver.url(gone_path)}, {"url": receiver.url(healthy_path)}]}
    configuration = (await tenant.client.post("/v1/delivery-configurations", json=body)).json()
    await subscribe(tenant, configuration["id"])
    # Its own operational events would reach `healthy_path` through it: they must not.
    await subscribe(tenant, configuration["id"], topic=OPERATIONS)
    operations_path, _ = await operations_subscription(tenant, receiver)
    others_path, _ = await operations_subscription(other_tenant, receiver)
    await settle()

    [event_id] = await publish(source, tenant)
    [notice] = await receiver.wait_for(operations_path, 1)
    gone = configuration["endpoints"][0]
    assert notice.json()["topic"] == OPERATIONS and notice.json()["event_type"] == "endpoint.disabled"
    expected = {"delivery_configuration_id": configuration["id"], "endpoint_id": gone["id"],
                "reason": "the endpoint answered 410 Gone"}
    assert notice.json()["data"].items() >= expected.items()
    stored = (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).json()
    [disabled, healthy] = stored["endpoints"]
    assert disabled["active"] is False and disabled["disabled_reason"] == "the endpoint answered 410 Gone"
    assert healthy["active"] is True

    # The next event goes to the healthy endpoint only, and is the only other thing it ever got.
    last = await sentinel(source, tenant, receiver, healthy_path)
    assert [r.json()["id"] for r in receiver.requests[healthy_path]] == [event_id, last]
    assert len(receiver.requests[gone_path]) == 1
    assert receiver.requests[others_path] == [], "another company hears nothing of it"

    receiver.script(gone_path, default=200)
    enabled = await tenant.client.post(
        f"/v1/delivery-configurations/{configuration['id']}/endpoints/{gone['id']}/enable", json={})
    assert enabled.status_code == 200
    assert enabled.json()["configuration"]["endpoints"][0].items() >= {"active": True, "disabled_reason": None}.items()
    await settle()
    after = await sentinel(source, tenant, receiver, gone_path)
    assert receiver.requests[gone_path][-1].json()["id"] == after


async def test_an_endpoint_enabled_with_its_failures_gets_them_before_the_dispatcher_hears_of_it(
        stack, tenant, source, receiver):
    """The failed deliveries an enable republishes may reach a dispatcher before the change does
    (the change notification's relay is held here): it must not give them up again on its copy of
    the configuration, read while the endpoint was disabled."""
    path = unique_path("gone")
    receiver.script(path, default=410)
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    [gone_event] = await publish(source, tenant)
    await wait_for_status(tenant, gone_event, "failed")
    [no_endpoint_event] = await publish(source, tenant)  # the dispatcher reads the disabled endpoint
    failed = await wait_for_status(tenant, no_endpoint_event, "failed")
    assert failed["last_error"] == "no active endpoint"

    receiver.script(path, default=200)
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", OUTBOX_PAUSE_LOCK)  # no change notification
        endpoint_id = configuration["endpoints"][0]["id"]
        enabled = await tenant.client.post(
            f"/v1/delivery-configurations/{configuration['id']}/endpoints/{endpoint_id}/enable",
            json={"republish_failed": True})
        assert enabled.status_code == 200 and enabled.json()["republished"] >= 1, enabled.text
        await wait_for_status(tenant, no_endpoint_event, "delivered")
        assert no_endpoint_event in [r.json()["id"] for r in receiver.requests[path]]
    finally:
        await connection.close()  # the relay goes on


@contextlib.asynccontextmanager
async def dispatcher_with(stack, env: dict):
    """The session's dispatcher replaced by one with these settings, and back afterwards."""
    await asyncio.to_thread(stack.services["dispatcher"].stop)
    special = stack.start_service("dispatcher", env)
    try:
        await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], special)
        yield special
    finally:
        await asyncio.to_thread(special.stop)
        stack.start_service("dispatcher")
        await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], stack.services["dispatcher"])


@pytest.mark.timeout(180)
async def test_an_endpoint_failing_past_the_disable_time_is_disabled_and_can_be_enabled_with_its_failures(
        stack, tenant, source, receiver):
    failing_path = unique_path("failing")
    receiver.script(failing_path, default=503)
    configuration = await realtime_configuration(tenant, receiver.url(failing_path))
    await subscribe(tenant, configuration["id"])
    operations_path, _ = await operations_subscription(tenant, receiver)
    # A test clock: disabled after 3 s of continuous failure (and 5 failures) instead of 5 days;
    # announced at 1 s. Retries a second apart, no breaker pauses, so a loaded machine gets there.
    async with dispatcher_with(stack, {"EM_ENDPOINT_DISABLE_AFTER_SECONDS": "3", "EM_HEALTH_CHECK_SECONDS": "0.5",
                                       "EM_ENDPOINT_FAILING_THRESHOLDS": "1", "EM_CIRCUIT_FAILURE_THRESHOLD": "100",
                                       "EM_RETRY_POLL_SECONDS": "0.2",
                                       "EM_RETRY_SCHEDULE": "0,1,1,1,1,1,1,1,1,1,1,1,1,1,1"}):
        await settle()
        [event_id] = await publish(source, tenant)
        notices = await receiver.wait_for(operations_path, 2, timeout=120)
        assert [n.json()["event_type"] for n in notices[:2]] == ["endpoint.failing", "endpoint.disabled"]
        assert notices[1].json()["data"]["reason"].startswith("failed without a success for ")
        failed = await wait_for_status(tenant, event_id, "failed", timeout=60)
        assert failed["last_error"] == "no active endpoint"

        receiver.script(failing_path, default=200)
        endpoint_id = configuration["endpoints"][0]["id"]
        enabled = await tenant.client.post(
            f"/v1/delivery-configurations/{configuration['id']}/endpoints/{endpoint_id}/enable",
            json={"republish_failed": True})
        assert enabled.json()["republished"] == 1
        await wait_for_status(tenant, event_id, "delivered", timeout=60)
