"""ThrottleBucket on its own, with a real event loop and real time (a few seconds)."""

from __future__ import annotations

import asyncio
import time

from services.dispatcher.throttle import ThrottleBucket
from tests.test_delivery_throttle import most_in_any_window


async def test_never_more_than_the_limit_in_any_window():
    bucket = ThrottleBucket(5, 0.5)
    started: list[float] = []

    async def request(latency: float):
        async with bucket.slot():
            started.append(time.monotonic())
            await asyncio.sleep(latency)

    await asyncio.gather(*(request(0.01 * (i % 3)) for i in range(20)))
    assert len(started) == 20
    assert most_in_any_window(started, 0.5) <= 5
    assert started[-1] - started[0] >= 1.5  # 20 requests at 5 per 0.5 s need three more windows


async def test_slow_responses_hold_their_slot():
    bucket = ThrottleBucket(2, 0.2)
    order: list[str] = []

    async def request(name: str, latency: float):
        async with bucket.slot():
            order.append(name)
            await asyncio.sleep(latency)

    first = asyncio.create_task(request("slow", 0.5))
    second = asyncio.create_task(request("fast", 0.0))
    await asyncio.sleep(0.3)
    third = asyncio.create_task(request("late", 0.0))
    await asyncio.sleep(0.05)
    assert order == ["slow", "fast", "late"]  # "fast" freed its slot 0.2 s after answering
    await asyncio.gather(first, second, third)


async def test_requests_sent_before_the_bucket_existed_count():
    bucket = ThrottleBucket(3, 1.0)
    bucket.remember([0.2, 0.3, 0.4, 5.0])  # three answered within the window, one long ago
    started = time.monotonic()
    async with bucket.slot():
        waited = time.monotonic() - started
    assert 0.5 <= waited <= 0.75, "the oldest of the three leaves the window 0.6 s from now"
    assert bucket.idle
