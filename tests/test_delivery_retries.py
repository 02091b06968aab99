"""Retries against a real receiver. The test stack runs with EM_RETRY_SCHEDULE=0,1,1 (three
attempts, a second apart), no jitter, a 2 s request timeout, and breakers that open after 3
consecutive failures for 2 s."""

from __future__ import annotations

from datetime import datetime

from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import attempts_of, publish, wait_for_status


async def endpoint(tenant, receiver, **extra):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path), **extra)
    await subscribe(tenant, configuration["id"])
    await settle()
    return path, configuration


async def test_server_errors_are_retried_until_success(tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, statuses=[500, 503])
    [event_id] = await publish(source, tenant)
    pending = await wait_for_status(tenant, event_id, "pending_retry")
    assert pending["next_attempt_at"] is not None
    assert pending["last_error"] == "HTTP 500"
    delivered = await wait_for_status(tenant, event_id, "delivered")
    assert delivered["attempt_count"] == 3
    attempts = await attempts_of(tenant, event_id)
    assert [a["http_status"] for a in attempts] == [500, 503, 200]
    assert [a["outcome"] for a in attempts] == ["retryable", "retryable", "success"]
    arrivals = [r.at for r in receiver.requests[path]]
    assert arrivals[1] - arrivals[0] >= 0.9, "the schedule's 1 s pause was kept"
    assert len({r.headers["webhook-id"] for r in receiver.requests[path]}) == 1, "stable id across retries"


async def test_attempts_run_out_and_the_delivery_fails(tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, default=502)
    [event_id] = await publish(source, tenant)
    failed = await wait_for_status(tenant, event_id, "failed")
    assert failed["attempt_count"] == 3
    assert failed["next_attempt_at"] is None
    assert len(await attempts_of(tenant, event_id)) == 3


async def test_client_errors_are_not_retried_except_the_transient_ones(tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, statuses=[400])
    [event_id] = await publish(source, tenant)
    failed = await wait_for_status(tenant, event_id, "failed")
    assert failed["attempt_count"] == 1
    assert [a["http_status"] for a in await attempts_of(tenant, event_id)] == [400]

    for transient in (408, 409, 425):
        receiver.script(path, statuses=[transient])
        [event_id] = await publish(source, tenant)
        await wait_for_status(tenant, event_id, "delivered")
        assert [a["http_status"] for a in await attempts_of(tenant, event_id)] == [transient, 200]


async def test_retry_after_is_honoured(tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, statuses=[429], headers={"Retry-After": "3"})
    [event_id] = await publish(source, tenant)
    pending = await wait_for_status(tenant, event_id, "pending_retry")
    await wait_for_status(tenant, event_id, "delivered")
    first, second = receiver.requests[path]
    assert second.at - first.at >= 2.8, "Retry-After: 3 beats the schedule's 1 s"
    attempts = await attempts_of(tenant, event_id)
    wait = datetime.fromisoformat(pending["next_attempt_at"]) - datetime.fromisoformat(attempts[0]["started_at"])
    assert wait.total_seconds() >= 2.9


async def test_timeouts_and_redirects_are_failures(tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, statuses=[302], headers={"Location": receiver.url(path + "/elsewhere")})
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    attempts = await attempts_of(tenant, event_id)
    assert attempts[0]["http_status"] == 302 and "redirects are not followed" in attempts[0]["error"]
    assert receiver.requests[path + "/elsewhere"] == []

    slow_path, slow = await endpoint(tenant, receiver)
    receiver.script(slow_path, delay=3)
    [slow_id] = await publish(source, tenant)
    pending = await wait_for_status(tenant, slow_id, "pending_retry", configuration_id=slow["id"])
    assert pending["last_error"].startswith("timeout after 2s")
    receiver.scripts[slow_path].delay = 0
    await wait_for_status(tenant, slow_id, "delivered", configuration_id=slow["id"])


async def test_circuit_breaker_holds_deliveries_without_clogging_others(tenant, source, receiver):
    broken_path, broken = await endpoint(tenant, receiver)
    receiver.script(broken_path, default=500)
    healthy_path, _ = await endpoint(tenant, receiver)
    first = await publish(source, tenant, count=3)  # three failures open the breaker
    for event_id in first:
        await wait_for_status(tenant, event_id, "pending_retry", configuration_id=broken["id"])
    held = await publish(source, tenant, count=3)
    for event_id in held:
        delivery = await wait_for_status(tenant, event_id, "pending_retry", configuration_id=broken["id"])
        assert delivery["attempt_count"] == 0, "held by the open breaker: no attempt used up"
        assert [a for a in await attempts_of(tenant, event_id) if a["endpoint_url"].endswith(broken_path)] == []
    # The other configuration's endpoint is not slowed: all its events arrive promptly.
    await receiver.wait_for(healthy_path, 6, timeout=5)

    receiver.script(broken_path, default=200)  # the endpoint recovers; a probe closes the breaker
    for event_id in first + held:
        await wait_for_status(tenant, event_id, "delivered", timeout=30, configuration_id=broken["id"])


async def test_pending_retries_survive_a_dispatcher_crash(stack, tenant, source, receiver):
    path, _ = await endpoint(tenant, receiver)
    receiver.script(path, default=503)
    ids = await publish(source, tenant, count=5)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "pending_retry")
    dispatcher = stack.services["dispatcher"]
    dispatcher.process.kill()
    dispatcher.process.wait()
    receiver.script(path, default=200)
    dispatcher.start()
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered", timeout=60)
    assert {r.json()["id"] for r in receiver.requests[path] if r.json()} >= set(ids)
