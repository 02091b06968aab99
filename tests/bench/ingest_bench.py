"""Ingest alone: the api and ingest services of a fresh stack (no matcher or dispatcher taking CPU
beside it), driven by the load generator from its own process. Single-event requests (many
concurrent clients) and batches of 100; every 202 means the broker acknowledged the events.
Beside it, the bare ingest (tests/bench/bare_ingest.py: HTTP in, produce, 202; nothing else) on
the same broker, alternated run by run; best of `repeats` for each."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.devstack import free_port, wait_for_port
from tests.bench.e2e import accepted_events, close, create_publisher, per_10k, run_loadgen, sent_events, whole_stack
from tests.bench.measure import cpu_snapshot, cpu_used, percentile


@dataclass
class IngestPlan:
    single_requests: int = 3_000
    single_clients: int = 32
    batched_events: int = 30_000
    batched_in_flight: int = 8
    max_seconds: float = 4  # each run sends no new request after this: a slow ingest bounds the time
    repeats: int = 3


async def ingest_alone(plan: IngestPlan = IngestPlan()) -> dict:  # noqa: B008 (a frozen default)
    env = await whole_stack(services=["api", "ingest"])
    bare = None
    try:
        tenant = await create_publisher(env, with_delivery=False)
        bare, bare_url = await _start_bare_ingest(env)
        targets = {"ingest": (tenant.ingest_url, {"ingest": env.stack.services["ingest"].process.pid}),
                   "bare": (bare_url, {"bare ingest": bare.pid})}
        shapes = {"single": (plan.single_requests, 1, plan.single_clients),
                  "batched": (plan.batched_events, 100, plan.batched_in_flight)}
        for target, (url, pids) in targets.items():  # first requests load caches and open connections
            await _run(url, tenant, f"{target}-warm", 500, 1, plan.single_clients, pids, max_seconds=3)
        results = {}
        for shape, (events, batch, in_flight) in shapes.items():
            runs: dict[str, list[dict]] = {"bare": [], "ingest": []}
            for n in range(plan.repeats):
                for target, (url, pids) in targets.items():
                    processes = {**pids, **{k: v for k, v in env.infrastructure_pids().items() if k != "receiver"}}
                    runs[target].append(await _run(url, tenant, f"{target}-{shape}{n}", events, batch, in_flight,
                                                   processes, plan.max_seconds))
            best = {target: max(runs[target], key=lambda run: run["events_per_second"]) for target in runs}
            unit = "requests_per_second" if batch == 1 else "events_per_second"
            results[shape] = {
                unit: best["ingest"]["events_per_second"], f"bare_{unit}": best["bare"]["events_per_second"],
                "ratio": round(best["ingest"]["events_per_second"] / best["bare"]["events_per_second"], 2),
                "concurrent_requests": in_flight, "events_per_request": batch, "runs": runs,
            }
            print(f"  ingest {shape}: {best['ingest']['events_per_second']} events/s "
                  f"(bare {best['bare']['events_per_second']})", flush=True)
        return results
    finally:
        if bare is not None:
            bare.terminate()
            await bare.wait()
        await close(env)


async def _start_bare_ingest(env):
    topic = "bench.bare-ingest"
    admin = AIOKafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=env.settings.kafka_partitions, replication_factor=1)])
    await admin.close()
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.bench.bare_ingest", str(port),
                                                   env.settings.kafka_bootstrap, topic)
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port)
    return process, f"http://127.0.0.1:{port}/v1/events"


async def _run(url: str, tenant, prefix: str, events: int, batch: int, in_flight: int, processes,
               max_seconds: float) -> dict:
    before = cpu_snapshot(processes)
    generated = await run_loadgen({"url": url, "token": tenant.token, "company_id": tenant.company_id,
                                   "prefix": prefix, "events": events, "batch": batch, "in_flight": in_flight,
                                   "max_seconds": max_seconds})
    cpu = cpu_used(before, cpu_snapshot(processes))
    accepted, refused = accepted_events(generated)
    answers = sorted((answered - sent) * 1000 for _first, _count, sent, answered, _status in generated["requests"])
    seconds = generated["finished"] - generated["started"]
    return {"sent": sent_events(generated), "accepted": len(accepted), "refused": refused, "seconds": round(seconds, 2),
            "events_per_second": round(len(accepted) / seconds),
            "answer_ms": {"p50": round(percentile(answers, 0.5), 1), "p99": round(percentile(answers, 0.99), 1)},
            "cpu_seconds_per_10k": per_10k(cpu, len(accepted))}
