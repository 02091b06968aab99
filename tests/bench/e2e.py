"""End to end: the whole stack as `make run` starts it (services.devstack.Stack: embedded
PostgreSQL and broker, migrations, the five services) on free ports in its own folder, so it never
meets a running `make run` or the test stack. A company is set up through the API as a user would
(application, source token, realtime configuration to the receiver, subscription); the load
generator (tests/bench/loadgen.py) posts batches of 100 to ingest from its own process and the
receiver (tests/bench/receiver.py) counts arrivals in its own. Every figure counts arrivals.

- saturated: up to 20,000 events (no new request after 20 s) posted with 4 requests of 100
  outstanding; delivered/s from the first send to the last arrival, and CPU seconds per 10,000
  events of each service, the broker and PostgreSQL (process trees read from /proc);
- paced: each offered rate for a few seconds, open loop; latency from ingest's 202 to arrival.
Each run sits beside a bare-pipeline run (tests/bench/baseline.py) on the same broker and
receiver, alternated so both meet the same noise; the best of `repeats` is kept for each."""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx
import orjson

from services.devstack import SERVICES
from shared.settings import get_settings
from tests.bench.baseline import bare_pipeline
from tests.bench.env import BenchEnv, wait_until
from tests.bench.measure import arrival_figures, cpu_snapshot, cpu_used

# The benchmark measures capacity: one source token posts far more than a tenant's per-key limit allows.
CAPACITY_NOT_LIMITS = {"EM_INGEST_RATE_LIMIT_PER_MINUTE": "100000000", "EM_API_RATE_LIMIT_PER_MINUTE": "100000000"}
SYSTEM = [*SERVICES, "broker", "postgresql"]  # what CPU per event is summed over (not the receiver)


@dataclass
class Plan:
    saturated_events: int = 20_000
    saturated_max_seconds: float = 20  # no new request after this: a slow system bounds the time
    in_flight: int = 4  # requests of `batch` events outstanding while saturating
    rates: tuple[int, ...] = (200, 500, 1000)
    paced_seconds: float = 4
    repeats: int = 3
    batch: int = 100


@dataclass
class Tenant:
    company_id: str
    token: str  # the source's ingest token
    path: str  # where the receiver sees this company's deliveries
    ingest_url: str
    runs: itertools.count = field(default_factory=lambda: itertools.count(1))


async def whole_stack(services=SERVICES) -> BenchEnv:
    """A fresh BenchEnv (folder, PostgreSQL, broker, receivers) with `services` running."""
    env = BenchEnv()
    await asyncio.to_thread(env.start)  # migrations run their own event loop: in a thread
    env.stack.env.update(CAPACITY_NOT_LIMITS)
    env.stack.replicas = {"dispatcher": get_settings().dev_dispatcher_processes}  # as `make run` starts it
    await asyncio.to_thread(env.stack.start_services, list(services))
    return env


async def close(env: BenchEnv) -> None:
    await asyncio.to_thread(env.stop)
    await asyncio.to_thread(env.stop_postgres)


async def create_publisher(env: BenchEnv, with_delivery: bool = True) -> Tenant:
    """A company and a source token through the API; with a realtime configuration to the
    receiver and a subscription when `with_delivery`."""
    api = f"http://127.0.0.1:{env.stack.ports['api']}"
    admin_headers = {"authorization": f"Bearer {env.stack.env['EM_ADMIN_TOKEN']}"}
    path = "/e2e"
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=admin_headers) as admin:
        company = _created(await admin.post("/v1/admin/companies", json={"name": "bench"}))
        source = _created(await admin.post("/v1/admin/sources", json={"name": "bench-load",
                                                                       "topics": ["SCG-Message"]}))
        if with_delivery:
            application = _created(await admin.post(f"/v1/admin/companies/{company['id']}/applications",
                                                    json={"name": "bench", "event_manager_enabled": True}))
            user = {"authorization": f"Bearer {application['api_key']}"}
            configuration = _created(await admin.post("/v1/delivery-configurations", headers=user, json={
                "name": "bench", "mode": "realtime", "active": True, "format": "json",
                "endpoints": [{"url": env.receiver_url(path), "active": True}]}))
            _created(await admin.post("/v1/subscriptions", headers=user, json={
                "topic": "SCG-Message", "delivery_configuration_id": configuration["id"],
                "start_at": "2020-01-01T00:00:00Z"}))
    ingest = f"http://127.0.0.1:{env.stack.ports['ingest']}/v1/events"
    return Tenant(company["id"], source["token"], path, ingest)


def _created(response: httpx.Response) -> dict:
    if response.status_code != 201:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def run_loadgen(plan: dict) -> dict:
    with tempfile.NamedTemporaryFile(prefix="em-loadgen-", suffix=".json") as output:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.bench.loadgen",
                                                       orjson.dumps(plan), output.name)
        if await process.wait() != 0:
            raise RuntimeError(f"the load generator exited {process.returncode}")
        return orjson.loads(output.read())  # the child wrote through its own handle; ours is at 0


def sent_events(generated: dict) -> int:
    return sum(count for _first, count, _sent, _answered, _status in generated["requests"])


def accepted_events(generated: dict) -> tuple[dict[int, float], dict[str, int]]:
    """Each accepted event's acceptance time (its request's 202), and the events refused by answer."""
    accepted: dict[int, float] = {}
    refused: dict[str, int] = {}
    for first, count, _sent, answered, status in generated["requests"]:
        if status == 202:
            accepted.update(dict.fromkeys(range(first, first + count), answered))
        else:
            refused[str(status)] = refused.get(str(status), 0) + count
    return accepted, refused


async def warm_up(env: BenchEnv, tenant: Tenant, timeout: float = 60) -> None:
    """Until a batch arrives whole: the matcher and dispatcher have applied the new subscription
    (configuration changes reach them through the changes topic) and every connection is open."""
    async def batch_arrived() -> bool:
        prefix = f"warm{next(tenant.runs)}"
        await run_loadgen({"url": tenant.ingest_url, "token": tenant.token, "company_id": tenant.company_id,
                           "prefix": prefix, "events": 100, "batch": 100, "in_flight": 1})
        return len(await env.wait_for_arrivals(tenant.path, prefix, 100, quiet_seconds=3)) == 100

    await wait_until(batch_arrived, timeout=timeout, interval=0.5)


async def delivered_run(env: BenchEnv, tenant: Tenant, events: int, batch: int, rate: float | None = None,
                        in_flight: int | None = None, max_seconds: float | None = None) -> dict:
    """One run through ingest -> matcher -> dispatcher -> receiver."""
    prefix = f"e{next(tenant.runs)}"
    processes = {**env.service_pids(), **env.infrastructure_pids()}
    before = cpu_snapshot(processes)
    generated = await run_loadgen({"url": tenant.ingest_url, "token": tenant.token, "company_id": tenant.company_id,
                                   "prefix": prefix, "events": events, "batch": batch, "rate": rate,
                                   "in_flight": in_flight, **({"max_seconds": max_seconds} if max_seconds else {})})
    accepted, refused = accepted_events(generated)
    arrivals = await env.wait_for_arrivals(tenant.path, prefix, len(accepted))
    cpu = env.by_service(cpu_used(before, cpu_snapshot(processes)))
    figures = arrival_figures(arrivals, prefix, accepted, generated["started"], sent_events(generated))
    figures["refused"] = refused
    if rate:
        figures["offered_per_second"] = rate
        figures["generator_latest_send_s"] = generated["latest_send_s"]
    else:
        figures["stages_s"] = await stage_times(env, tenant, prefix, generated["started"], accepted)
        # How much of the machine the run kept busy (the load generator's own CPU not counted).
        figures["busy_cores"] = round(sum(cpu.values()) / figures["seconds"], 2) if figures["seconds"] else None
    figures["cpu_seconds_per_10k"] = per_10k(cpu, figures["arrived"])
    return figures


# When the matcher stored the run's last delivery, and the dispatcher sent its last attempt.
LAST_STORED_AND_SENT = """
SELECT (SELECT extract(epoch FROM max(created_at)) FROM deliveries WHERE company_id = $1 AND event_id LIKE $2),
       (SELECT extract(epoch FROM max(started_at)) FROM delivery_attempts WHERE company_id = $1 AND event_id LIKE $2)
"""


async def stage_times(env: BenchEnv, tenant: Tenant, prefix: str, started: float, accepted: dict[int, float]) -> dict:
    """Seconds from the first send until each stage was done with the run's events: ingest's last
    202, the matcher's last stored delivery, the dispatcher's last attempt. A stage that finishes
    long before the next one is not what bounds the run."""
    pool = await env.pool()
    try:
        stored, sent = await pool.fetchrow(LAST_STORED_AND_SENT, tenant.company_id, prefix + "-%")
    finally:
        await pool.close()

    def since_start(moment):
        return round(float(moment) - started, 2) if moment is not None else None
    return {"accepted": since_start(max(accepted.values(), default=None)), "stored": since_start(stored),
            "sent": since_start(sent)}


def per_10k(cpu: dict[str, float], events: int) -> dict[str, float]:
    figures = {name: round(seconds * 10_000 / max(events, 1), 2) for name, seconds in cpu.items()}
    figures["total"] = round(sum(value for name, value in figures.items() if name != "receiver"), 2)
    return figures


async def end_to_end(plan: Plan = Plan()) -> dict:  # noqa: B008 (a frozen default is fine here)
    started = time.monotonic()
    env = await whole_stack()
    try:
        tenant = await create_publisher(env)
        await warm_up(env, tenant)
        print(f"  whole stack up and delivering after {time.monotonic() - started:.1f} s", flush=True)
        return {"saturated": await saturated(env, tenant, plan), "paced": await paced(env, tenant, plan),
                "plan": plan.__dict__ | {"rates": list(plan.rates)}}
    finally:
        stopping = time.monotonic()
        await close(env)
        print(f"  whole stack stopped in {time.monotonic() - stopping:.1f} s", flush=True)


async def saturated(env: BenchEnv, tenant: Tenant, plan: Plan) -> dict:
    runs: dict[str, list[dict]] = {"bare": [], "whole": []}
    for _ in range(plan.repeats):
        runs["bare"].append(await bare_pipeline(env, plan.saturated_events))
        runs["whole"].append(await delivered_run(env, tenant, plan.saturated_events, plan.batch,
                                                 in_flight=plan.in_flight, max_seconds=plan.saturated_max_seconds))
        whole = runs["whole"][-1]
        print(f"  saturated: bare {runs['bare'][-1]['events_per_second']}/s, whole {whole['events_per_second']}/s "
              f"(done after: {whole['stages_s']}, arrived {whole['seconds']} s; {whole['busy_cores']} cores busy)",
              flush=True)
    best_bare = max(runs["bare"], key=lambda run: run["events_per_second"])
    best_whole = max(runs["whole"], key=lambda run: run["events_per_second"])
    cheapest = min(runs["whole"], key=lambda run: run["cpu_seconds_per_10k"]["total"])
    return {
        "events_per_second": best_whole["events_per_second"],
        "bare_events_per_second": best_bare["events_per_second"],
        "ratio": round(best_whole["events_per_second"] / best_bare["events_per_second"], 2),
        "cpu_seconds_per_10k": cheapest["cpu_seconds_per_10k"],
        "stages_s": best_whole["stages_s"] | {"arrived": best_whole["seconds"]},
        "busy_cores": best_whole["busy_cores"],
        "bare_cpu_seconds_per_10k": min(runs["bare"], key=lambda run: sum(run["cpu_seconds_per_10k"].values())
                                        )["cpu_seconds_per_10k"],
        "lost": sum(run["lost"] for run in runs["whole"]),
        "duplicates": sum(run["duplicates"] for run in runs["whole"]),
        "runs": runs,
    }


async def paced(env: BenchEnv, tenant: Tenant, plan: Plan) -> dict:
    results = {}
    for rate in plan.rates:
        events = int(rate * plan.paced_seconds)
        runs: dict[str, list[dict]] = {"bare": [], "whole": []}
        for _ in range(plan.repeats):
            runs["bare"].append(await bare_pipeline(env, events, rate=rate))
            runs["whole"].append(await delivered_run(env, tenant, events, plan.batch, rate=rate))
        best_bare = _best_latency(runs["bare"])
        best_whole = _best_latency(runs["whole"])
        results[str(rate)] = {
            "latency_ms": best_whole["latency_ms"], "bare_latency_ms": best_bare["latency_ms"],
            "p99_ratio": _ratio(best_whole, best_bare, "p99"),
            "lost": sum(run["lost"] for run in runs["whole"]),
            "runs": runs,
        }
        print(f"  {rate}/s offered: p50/p99/max {best_whole['latency_ms']} ms "
              f"(bare {best_bare['latency_ms']})", flush=True)
    return results


def _best_latency(runs: list[dict]) -> dict:
    """The run with the lowest p99 among those that lost nothing (all of them if every one lost)."""
    complete = [run for run in runs if run["lost"] == 0 and run["latency_ms"]] or runs
    return min(complete, key=lambda run: run["latency_ms"]["p99"] if run["latency_ms"] else float("inf"))


def _ratio(whole: dict, bare: dict, key: str) -> float | None:
    if not whole["latency_ms"] or not bare["latency_ms"] or not bare["latency_ms"][key]:
        return None
    return round(whole["latency_ms"][key] / bare["latency_ms"][key], 2)


async def _main() -> None:
    started = time.time()
    print(orjson.dumps(await end_to_end(), option=orjson.OPT_INDENT_2).decode())
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(_main())
