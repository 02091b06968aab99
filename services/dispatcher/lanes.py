"""EndpointLane: each company's endpoint host gets its own share of the delivery capacity.

Every request first takes one of its lane's `limit` slots, and only then one of the dispatcher's
shared slots. A slow or hanging endpoint therefore holds at most `limit` shared slots however
many deliveries wait for it; they wait in its lane, not in front of other endpoints. A lane is
per company and host (`scheme://host:port`), so one company pointing several configurations at
the same slow host still gets one share, and two companies using the same CRM provider do not
share theirs. The lane also learns how long its host takes to answer, so the dispatcher can park
a backlog that would take too long to drain (see `Dispatcher._park`)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from functools import lru_cache
from urllib.parse import urlsplit

# How fast the response-time estimate follows the endpoint (exponential moving average).
SMOOTHING = 0.2
# Until a host has answered once, it is presumed this slow: a burst to a new host that hangs
# is parked after a few seconds' worth instead of filling the dispatcher's memory.
UNKNOWN_PACE_SECONDS = 1.0


class EndpointLane:
    def __init__(self, limit: int):
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0
        self.in_flight = 0
        self.seconds_per_request: float | None = None  # unknown until the host answers

    @property
    def idle(self) -> bool:
        return self.waiting == 0 and self.in_flight == 0

    @property
    def backlog_seconds(self) -> float:
        """How long the deliveries waiting in this lane will take to go out, at the current pace."""
        pace = UNKNOWN_PACE_SECONDS if self.seconds_per_request is None else self.seconds_per_request
        return self.waiting * pace / self.limit

    def observe(self, seconds: float) -> None:
        """How long the host took to answer one request (the first answer replaces the guess)."""
        if self.seconds_per_request is None:
            self.seconds_per_request = seconds
        else:
            self.seconds_per_request += SMOOTHING * (seconds - self.seconds_per_request)

    @asynccontextmanager
    async def slot(self):
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()


@lru_cache(maxsize=100_000)
def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


class EndpointLanes:
    """One lane per (company, host), created on first use; idle lanes are dropped as the map grows."""

    def __init__(self, limit: int, keep: int = 10_000):
        self.limit = limit
        self.keep = keep
        self._lanes: dict[tuple[str, str], EndpointLane] = {}

    def of(self, company_id: str, url: str) -> EndpointLane:
        key = (company_id, origin(url))
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= self.keep:
                self._lanes = {key: lane for key, lane in self._lanes.items() if not lane.idle}
            lane = self._lanes[key] = EndpointLane(self.limit)
        return lane
