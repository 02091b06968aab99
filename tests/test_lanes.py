"""Fair shares of the dispatcher's slots between company endpoint hosts (services/dispatcher/lanes.py)."""

from __future__ import annotations

import asyncio
import time

from services.dispatcher.lanes import EndpointLanes


async def hold(lane, release: asyncio.Event, entered: list) -> None:
    async with lane.slot():
        entered.append(lane)
        await release.wait()


async def until(condition) -> None:
    while not condition():  # noqa: ASYNC110 - the lanes under test are driven by this same loop
        await asyncio.sleep(0)


async def test_a_busy_host_keeps_its_share_and_leaves_room_for_another():
    lanes = EndpointLanes(capacity=12, minimum=2)
    slow = lanes.of("cmp_a", "https://crm.example/hook")
    assert lanes.of("cmp_a", "https://CRM.example/other") is slow, "one lane per company and host"
    assert lanes.of("cmp_b", "https://crm.example/hook") is not slow, "companies do not share a lane"
    release, entered = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(slow, release, entered)) for _ in range(20)]
    await until(lambda: len(entered) == 6)
    assert slow.in_flight == 6 and slow.waiting == 14, "alone, a lane holds half the slots"

    quick = lanes.of("cmp_b", "https://other.example/hook")
    quick_release, quick_entered = asyncio.Event(), []
    quick_task = asyncio.create_task(hold(quick, quick_release, quick_entered))
    await until(lambda: quick_entered)
    assert lanes.share() == 12 // 3, "two busy lanes: a third of the slots each"
    quick_release.set()
    await quick_task
    assert quick.idle and lanes.busy == 1

    release.set()
    await asyncio.gather(*tasks)
    assert len(entered) == 20 and slow.idle and lanes.busy == 0


async def test_waiting_is_cancelled_cleanly():
    lanes = EndpointLanes(capacity=4, minimum=1)
    lane = lanes.of("cmp_a", "http://h")
    release, entered = asyncio.Event(), []
    holders = [asyncio.create_task(hold(lane, release, entered)) for _ in range(2)]
    await until(lambda: len(entered) == 2)
    waiter = asyncio.create_task(hold(lane, release, entered))
    await until(lambda: lane.waiting == 1)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert lane.waiting == 0 and lane.in_flight == 2
    release.set()
    await asyncio.gather(*holders)
    assert lane.idle and lanes.busy == 0


async def test_the_backlog_is_measured_at_the_hosts_pace():
    lanes = EndpointLanes(capacity=8, minimum=1)
    lane = lanes.of("cmp_a", "http://h")
    lane.waiting = 40  # as if 40 deliveries waited
    share = lanes.share()
    assert lane.backlog_seconds == 0, "a host nobody has sent to yet is not presumed slow"
    lane.silent_since = time.monotonic() - 3
    assert 40 * 3.0 / share <= lane.backlog_seconds < 40 * 4.0 / share, "silent for 3 s: presumed to take 3 s"
    lane.observe(8.0)
    assert lane.backlog_seconds == 40 * 8.0 / share, "once it answers, its answers tell"
    lane.observe(0.0)
    assert 40 * 6.0 / share <= lane.backlog_seconds < 40 * 8.0 / share, "the pace follows the host gradually"
