"""One window of 1,000,000 buffered events (about 300 B each) written to a local file by the
scheduler's own code, in a child process whose peak RSS we read afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from tests.bench.env import create_company, create_configuration, create_subscription

EVENTS = 1_000_000

SEED_EVENTS = """
INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out)
SELECT $1, 'sched-' || g, 'SCG-Message', 'message.delivered', '+1415' || lpad(g::text, 7, '0'),
       now() - interval '95 minutes', now() - interval '95 minutes',
       jsonb_build_object('message_id', 'msg-' || g, 'campaign', 'winter-sale'), true
FROM generate_series($2::int, $3::int) g
"""

SEED_DELIVERIES = """
INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status,
                        attempt_count, succeeded_endpoints, created_at, updated_at)
SELECT 'dlv-sched-' || g, $1, 'sched-' || g, $4, $5, 'buffered', 0, '{}', now() - interval '95 minutes', now()
FROM generate_series($2::int, $3::int) g
"""

CHILD = """
import asyncio, json, sys, time
from datetime import datetime, timezone
from services.scheduler.windows import WindowRunner
from shared.db import create_pool
from shared.kafka import Topics, make_producer
from shared.media import MediaStore
from shared.settings import Settings

async def main():
    settings = Settings()
    pool = await create_pool(settings.database_url, size=3)
    producer = make_producer(settings)
    await producer.start()
    runner = WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)
    started = time.perf_counter()
    handled = await runner.run_due_windows(datetime.now(timezone.utc))
    elapsed = time.perf_counter() - started
    rows = await pool.fetch("SELECT status, event_count, size_bytes FROM buffer_files WHERE id = ANY($1::text[])",
                            handled)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across exec.
    hwm = [line for line in open("/proc/self/status").read().splitlines() if line.startswith("VmHWM:")]
    peak_mb = int(hwm[0].split()[1]) / 1024
    print(json.dumps({"seconds": elapsed, "files": [dict(r) for r in rows], "peak_rss_mb": peak_mb}))
    await producer.stop()
    await pool.close()

asyncio.run(main())
"""


async def one_million_window(env) -> dict:
    pool = await env.pool()
    company = await create_company(pool)
    configuration = await create_configuration(pool, company, mode="scheduled", schedule={"simple": "hourly"})
    subscription = await create_subscription(pool, company, configuration)
    seeding = time.perf_counter()
    for start in range(1, EVENTS + 1, 200_000):
        end = min(start + 199_999, EVENTS)
        await pool.execute(SEED_EVENTS, company, start, end)
        await pool.execute(SEED_DELIVERIES, company, start, end, subscription, configuration)
    seeded = time.perf_counter() - seeding
    await pool.close()
    environment = {**os.environ, **env.stack.env, "EM_DATA_DIR": str(env.folder)}
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", CHILD], env=environment,
                                     capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    stored = [f for f in report["files"] if f["status"] == "stored"]
    return {"events": EVENTS, "seed_seconds": round(seeded, 1), "write_seconds": round(report["seconds"], 1),
            "files": report["files"], "file_mb": round(sum(f["size_bytes"] for f in stored) / 2**20, 1),
            "bytes_per_event": round(sum(f["size_bytes"] for f in stored) / EVENTS),
            "scheduler_peak_rss_mb": round(report["peak_rss_mb"])}
