"""OffsetTracker: deliveries finish out of order (a slow endpoint, a throttled configuration),
but a partition's committed offset may only pass records that are all done."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._highest: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._progress = asyncio.Event()  # set whenever a record is done

    def begin(self, partition: TopicPartition, offset: int) -> None:
        self._pending.setdefault(partition, set()).add(offset)
        self._highest[partition] = max(offset, self._highest.get(partition, -1))

    def done(self, partition: TopicPartition, offset: int) -> None:
        self._pending.get(partition, set()).discard(offset)
        self._progress.set()

    async def wait_done(self, partitions, timeout: float) -> bool:
        """Wait until no record of these partitions is in flight; False if `timeout` ran out."""
        try:
            async with asyncio.timeout(timeout):
                while self.in_flight(partitions):
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    def in_flight(self, partitions=None) -> int:
        return sum(len(self._pending.get(p, ())) for p in (partitions or self._pending))

    def committable(self, partitions=None) -> dict[TopicPartition, int]:
        """The next offset to commit for each partition that moved since the last commit."""
        result = {}
        for partition in partitions or list(self._highest):
            if partition not in self._highest:
                continue
            pending = self._pending.get(partition)
            position = min(pending) if pending else self._highest[partition] + 1
            if position > self._committed.get(partition, -1):
                result[partition] = position
        return result

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions) -> None:
        for partition in partitions:
            self._pending.pop(partition, None)
            self._highest.pop(partition, None)
            self._committed.pop(partition, None)
