"""ThrottleBucket: at most `max_requests` in any window of `per_seconds`, as the endpoint sees it.

A request holds one of `max_requests` slots from the moment it is let through until
`per_seconds` after its response arrived. The endpoint received the request before it answered,
so request k+N reaches it more than `per_seconds` after request k did, whatever the event-loop
or network jitter: the limit holds for every window, not just aligned ones, at the cost of the
response time per window. Because a throttled configuration's traffic is keyed to one Kafka
partition (shared/messages.py delivery_key), one dispatcher replica owns it at a time; when
ownership moves, the new owner's bucket starts from the attempts recorded in the last window, so
the limit also holds across replicas and restarts."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager


class ThrottleBucket:
    def __init__(self, max_requests: int, per_seconds: float):
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._finished: deque[float] = deque()  # response times still inside their window
        self._in_flight = 0
        self._lock = asyncio.Lock()  # first come, first served
        self._released = asyncio.Event()
        self.waiting = 0

    @property
    def idle(self) -> bool:
        return self._in_flight == 0 and self.waiting == 0

    def remember(self, finished_seconds_ago: list[float]) -> None:
        """Count requests that finished before this bucket existed (sent by another replica, or
        before a restart) against the current window."""
        now = time.monotonic()
        recent = sorted(now - ago for ago in finished_seconds_ago if ago < self.per_seconds)
        self._finished = deque(recent[-self.max_requests:])

    @property
    def rate(self) -> float:
        return self.max_requests / self.per_seconds

    @asynccontextmanager
    async def slot(self):
        self.waiting += 1
        try:
            async with self._lock:
                await self._until_free()
                self._in_flight += 1
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._finished.append(time.monotonic())
            self._released.set()

    async def _until_free(self) -> None:
        while True:
            now = time.monotonic()
            while self._finished and self._finished[0] + self.per_seconds <= now:
                self._finished.popleft()
            if self._in_flight + len(self._finished) < self.max_requests:
                return
            if self._finished:
                await asyncio.sleep(self._finished[0] + self.per_seconds - now)
            else:  # every slot is a request still in flight: wait for one to answer
                self._released.clear()
                await self._released.wait()
