"""ThrottleBucket: at most `max_requests` in any window of `per_seconds`.

A sliding log of the last `max_requests` send times: a request may start only once the oldest
of them is `per_seconds` old. Exact for every window, not just aligned ones. Because a delivery
configuration's traffic is keyed to one Kafka partition, one dispatcher replica owns it at a
time, so the limit holds across replicas."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class ThrottleBucket:
    def __init__(self, max_requests: int, per_seconds: float):
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._sent: deque[float] = deque(maxlen=max_requests)
        self._lock = asyncio.Lock()
        self.waiting = 0

    @property
    def rate(self) -> float:
        return self.max_requests / self.per_seconds

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            async with self._lock:  # first come, first served
                if len(self._sent) == self.max_requests:
                    # A small margin: the receiver's clock sees our request a little later.
                    wait = self._sent[0] + self.per_seconds + 0.002 - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                self._sent.append(time.monotonic())
        finally:
            self.waiting -= 1
