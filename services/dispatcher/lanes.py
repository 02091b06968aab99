"""EndpointLane: each endpoint's own share of the delivery capacity.

Every request to an endpoint first takes one of its lane's `limit` slots, and only then one of
the dispatcher's shared slots. A slow or hanging endpoint therefore holds at most `limit` shared
slots however many deliveries wait for it; they wait in its lane, not in front of other
endpoints. The lane also learns how long its endpoint takes to answer, so the dispatcher can park
a backlog that would take too long to drain (see `Dispatcher._park`)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

# How fast the response-time estimate follows the endpoint (exponential moving average).
SMOOTHING = 0.2


class EndpointLane:
    def __init__(self, limit: int):
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0
        self.in_flight = 0
        self.seconds_per_request = 0.0  # a new endpoint is presumed fast until it answers

    @property
    def idle(self) -> bool:
        return self.waiting == 0 and self.in_flight == 0

    @property
    def backlog_seconds(self) -> float:
        """How long the deliveries waiting in this lane will take to go out, at the current pace."""
        return self.waiting * self.seconds_per_request / self.limit

    @asynccontextmanager
    async def slot(self):
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
            elapsed = time.monotonic() - started
            self.seconds_per_request += SMOOTHING * (elapsed - self.seconds_per_request)


class EndpointLanes:
    """One lane per endpoint id, created on first use; idle lanes are dropped as the map grows."""

    def __init__(self, limit: int, keep: int = 10_000):
        self.limit = limit
        self.keep = keep
        self._lanes: dict[str, EndpointLane] = {}

    def of(self, endpoint_id: str) -> EndpointLane:
        lane = self._lanes.get(endpoint_id)
        if lane is None:
            if len(self._lanes) >= self.keep:
                self._lanes = {key: lane for key, lane in self._lanes.items() if not lane.idle}
            lane = self._lanes[endpoint_id] = EndpointLane(self.limit)
        return lane
