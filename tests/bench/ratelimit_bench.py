"""What a rate-limit check adds to a request (shared/ratelimit.py): one `take` against PostgreSQL,
next to a bare `SELECT 1` round trip on the same pool, sequentially (latency) and with 16 callers
at once on one key's bucket (the hot row every replica updates) and on 16 keys' buckets.

    .venv/bin/python -m tests.bench.ratelimit_bench          # embedded PostgreSQL, or EM_DATABASE_URL
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from services.devstack import start_embedded_postgres
from shared.db import create_pool
from shared.migrate import upgrade
from shared.ratelimit import RateLimiter

ROUNDS, CALLERS = 2000, 16
UNLIMITED = 10_000_000


async def _latencies(call, rounds: int) -> list[float]:
    spent = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1e6)
    return spent


def _report(name: str, spent: list[float]) -> None:
    spent.sort()
    print(f"{name:<34} mean {statistics.mean(spent):7.0f} us  p50 {spent[len(spent) // 2]:7.0f} us  "
          f"p99 {spent[int(len(spent) * 0.99)]:7.0f} us")


async def _throughput(name: str, call_for) -> None:
    started = time.perf_counter()
    await asyncio.gather(*(_latencies(call_for(i), ROUNDS // CALLERS) for i in range(CALLERS)))
    print(f"{name:<34} {ROUNDS / (time.perf_counter() - started):7.0f} takes/s")


async def main(url: str) -> None:
    pool = await create_pool(url, size=CALLERS)
    limiter = RateLimiter(pool, 60.0)
    try:
        await _latencies(lambda: pool.fetchval("SELECT 1"), 200)  # warm the connections and statements
        await _latencies(lambda: limiter.take("key:warm", UNLIMITED), 200)
        _report("SELECT 1 (one round trip)", await _latencies(lambda: pool.fetchval("SELECT 1"), ROUNDS))
        _report("take (one key)", await _latencies(lambda: limiter.take("key:bench", UNLIMITED, "cmp_x"), ROUNDS))
        await _throughput(f"take, {CALLERS} callers on one key",
                          lambda i: lambda: limiter.take("key:hot", UNLIMITED, "cmp_x"))
        await _throughput(f"take, {CALLERS} callers on {CALLERS} keys",
                          lambda i: lambda: limiter.take(f"key:{i}", UNLIMITED, "cmp_x"))
    finally:
        await pool.close()


if __name__ == "__main__":
    database_url = os.environ.get("EM_DATABASE_URL") or start_embedded_postgres(
        Path(tempfile.mkdtemp(prefix="em-ratelimit-bench-")) / "postgres", "delete")
    upgrade(database_url)
    asyncio.run(main(database_url))
