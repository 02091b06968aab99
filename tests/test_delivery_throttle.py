"""Throttling: never more than max_requests in any window of per_seconds, and a throttled
configuration does not slow an unthrottled one."""

from __future__ import annotations

from tests.conftest import eventually, make_tenant, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import deliveries_of, publish


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_throttle_is_never_exceeded_and_does_not_slow_others(admin, urls, source, receiver):
    throttled_tenant = await make_tenant(admin, urls)
    free_tenant = await make_tenant(admin, urls)
    throttled_path, free_path = unique_path("throttled"), unique_path("free")
    throttled = await realtime_configuration(throttled_tenant, receiver.url(throttled_path),
                                             throttle={"max_requests": 5, "per_seconds": 1})
    await subscribe(throttled_tenant, throttled["id"])
    free = await realtime_configuration(free_tenant, receiver.url(free_path))
    await subscribe(free_tenant, free["id"])
    await settle()

    await publish(source, throttled_tenant, count=30)  # 6 s of traffic at 5/s; parks the overflow
    await publish(source, free_tenant, count=30)
    free_requests = await receiver.wait_for(free_path, 30, timeout=5)
    throttled_so_far = len(receiver.requests[throttled_path])
    assert throttled_so_far < 30, "the unthrottled configuration finished first"
    assert free_requests[-1].at - free_requests[0].at < 3

    requests = await receiver.wait_for(throttled_path, 30, timeout=30)
    times = [r.at for r in requests]
    assert most_in_any_window(times, 1.0) <= 5
    assert times[-1] - times[0] >= 5.0 - 0.1  # 30 requests at 5/s need at least 5 s
    assert len({r.json()["id"] for r in requests}) == 30
    await throttled_tenant.client.aclose()
    await free_tenant.client.aclose()


def test_window_counter():
    assert most_in_any_window([0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert most_in_any_window([], 1.0) == 0


async def test_throttle_window_survives_a_dispatcher_restart(stack, tenant, source, receiver):
    """A fresh dispatcher (after a restart, or a rebalance to another replica) counts what was
    sent in the current window before it sends more."""
    path = unique_path("restart")
    configuration = await realtime_configuration(tenant, receiver.url(path),
                                                 throttle={"max_requests": 5, "per_seconds": 30})
    await subscribe(tenant, configuration["id"])
    await settle()
    await publish(source, tenant, count=5)
    await receiver.wait_for(path, 5)
    dispatcher = stack.services["dispatcher"]
    dispatcher.stop()
    dispatcher.start()
    ids = await publish(source, tenant, count=5)

    async def held_back():
        # The restarted dispatcher has these deliveries and holds them: one waits in the throttle
        # bucket, so those behind it are parked with a due time. A dispatcher that forgot the
        # window would have sent all five at once, parking none.
        deliveries = [d for event_id in ids for d in await deliveries_of(tenant, event_id)]
        return any(d["status"] == "queued" and d["next_attempt_at"] for d in deliveries)

    await eventually(held_back, timeout=30)
    assert len(receiver.requests[path]) == 5, "the restarted dispatcher remembered the window"
    requests = await receiver.wait_for(path, 10, timeout=60)
    times = [r.at for r in requests]
    assert most_in_any_window(times, 30.0) <= 5
