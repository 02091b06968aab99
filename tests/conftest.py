"""One stack per test session: embedded PostgreSQL and broker (or those named by EM_DATABASE_URL /
EM_KAFKA_BOOTSTRAP), migrated, and the five services as real processes on free ports. Tests
isolate themselves by creating their own companies."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.devstack import SERVICES, Stack, free_port
from shared.db import asyncpg_dsn
from shared.kafka import Topics
from shared.settings import Settings
from tests.oauth_server import TokenServer
from tests.receiver import Receiver

# Short retry delays and breaker pauses so retry behaviour is observable within seconds.
TEST_SERVICE_ENV = {
    "EM_RETRY_SCHEDULE": "0,1,1",
    "EM_RETRY_JITTER": "0",
    "EM_RETRY_POLL_SECONDS": "0.2",
    "EM_CIRCUIT_FAILURE_THRESHOLD": "3",
    "EM_CIRCUIT_OPEN_SECONDS": "2",
    "EM_REQUEST_TIMEOUT_SECONDS": "2",
    "EM_SCHEDULER_TICK_SECONDS": "3600",  # scheduler tests drive the clock themselves
    "EM_CONFIG_RECONCILE_SECONDS": "2",
    "EM_REPLAY_SCAN_LIMIT": "100",  # tests/test_replay.py goes past it with a hundred events
}


# The session's stack, for settle(): a plain function, so helpers call it without a fixture.
_session_stack: Stack | None = None


def session_stack() -> Stack:
    """The session's stack, for helpers called without fixtures (once `stack` has started it)."""
    assert _session_stack is not None, "the session's stack is not started"
    return _session_stack


@pytest.fixture(scope="session")
def stack():
    global _session_stack
    for key, value in TEST_SERVICE_ENV.items():
        os.environ.setdefault(key, value)
    # Not under pytest's own temporary tree: every pytest session makes that private again, and the
    # embedded PostgreSQL runs as its own user when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="em-test-"))
    stack = Stack(data_dir=data_dir, ports={name: free_port() for name in SERVICES})
    stack.start_infrastructure(broker_port=free_port(), pg_cleanup="delete")
    try:
        stack.prepare()
        stack.start_services()
        _session_stack = stack
        yield stack
    finally:
        stack.stop()  # the embedded PostgreSQL deletes its own data when the session ends


@dataclass
class Urls:
    api: str
    ingest: str


@pytest.fixture(scope="session")
def urls(stack) -> Urls:
    return Urls(f"http://127.0.0.1:{stack.ports['api']}", f"http://127.0.0.1:{stack.ports['ingest']}")


@pytest.fixture(scope="session")
async def admin(stack, urls):
    async with httpx.AsyncClient(base_url=urls.api, timeout=30,
                                 headers={"authorization": f"Bearer {stack.env['EM_ADMIN_TOKEN']}"}) as client:
        yield client


@pytest.fixture(scope="session")
async def source(admin, urls):
    """A source service allowed to publish every catalog topic."""
    response = await admin.post("/v1/admin/sources", json={"name": "test-source", "topics": ALL_TOPICS})
    assert response.status_code == 201, response.text
    async with httpx.AsyncClient(base_url=urls.ingest, timeout=30,
                                 headers={"authorization": f"Bearer {response.json()['token']}"}) as client:
        yield client


ALL_TOPICS = ["SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
              "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages"]


@dataclass
class Tenant:
    id: str
    application_id: str
    api_key: str
    client: httpx.AsyncClient


async def make_tenant(admin, urls) -> Tenant:
    company = (await admin.post("/v1/admin/companies", json={"name": f"co-{uuid.uuid4().hex[:8]}"})).json()
    application = (await admin.post(f"/v1/admin/companies/{company['id']}/applications",
                                    json={"name": "crm", "event_manager_enabled": True})).json()
    client = httpx.AsyncClient(base_url=urls.api, timeout=30,
                               headers={"authorization": f"Bearer {application['api_key']}"})
    return Tenant(company["id"], application["id"], application["api_key"], client)


@pytest.fixture
async def tenant(admin, urls):
    tenant = await make_tenant(admin, urls)
    yield tenant
    await tenant.client.aclose()


@pytest.fixture
async def other_tenant(admin, urls):
    tenant = await make_tenant(admin, urls)
    yield tenant
    await tenant.client.aclose()


@pytest.fixture(scope="session")
async def receiver():
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def token_server():
    """A real OAuth 2.0 token server on 127.0.0.1 knowing client `em-client` (secret
    `em-client-secret`) and the password-grant user `crm-user`."""
    server = TokenServer()
    server.add_client("em-client", "em-client-secret")
    server.users["crm-user"] = "crm-password"
    await server.start()
    yield server
    await server.stop()


def unique_path(name: str = "hook") -> str:
    return f"/{name}/{uuid.uuid4().hex[:10]}"


async def realtime_configuration(tenant: Tenant, url: str, **extra) -> dict:
    body = {"name": "crm-realtime", "mode": "realtime", "active": True,
            "endpoints": [{"url": url, "active": True}], "format": "json", **extra}
    response = await tenant.client.post("/v1/delivery-configurations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def subscribe(tenant: Tenant, configuration_id: str, topic: str = "SCG-Message", **extra) -> dict:
    body = {"topic": topic, "delivery_configuration_id": configuration_id, "start_at": "2020-01-01T00:00:00Z",
            **extra}
    response = await tenant.client.post("/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def settle(*replica_ports: int, timeout: float = 20) -> None:
    """Wait until every configuration change made so far is applied by the matcher and the
    dispatcher (and by the extra replicas listening on `replica_ports`): the api's outbox is
    empty, so every change notification is on the changes topic, and each replica's `/changes`
    says it has applied the topic up to the end it has now."""
    stack = _session_stack
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await eventually(lambda: connection.fetchval("SELECT NOT EXISTS (SELECT FROM change_outbox)"),
                         timeout=timeout, interval=0.05)
    finally:
        await connection.close()
    ends = await end_offsets(stack, topics(stack).changes)
    ports = [stack.ports["matcher"], stack.ports["dispatcher"], *replica_ports]
    behind: dict[int, object] = {}
    async with httpx.AsyncClient(timeout=5) as client:

        async def applied_everywhere() -> bool:
            behind.clear()
            for port in ports:
                try:
                    partitions = (await client.get(f"http://127.0.0.1:{port}/changes")).json()["partitions"]
                except httpx.HTTPError as exc:  # restarting: it is not up to date until it answers
                    behind[port] = repr(exc)
                    continue
                if any(partitions.get(str(p), {}).get("applied", 0) < end for p, end in ends.items()):
                    behind[port] = partitions
            return not behind

        try:
            await eventually(applied_everywhere, timeout=timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"changes topic ends at {ends}; replicas behind (by port): {behind}") from None


def topics(stack: Stack) -> Topics:
    return Topics.of(Settings(kafka_topic_prefix=stack.env.get("EM_KAFKA_TOPIC_PREFIX", "em")))


async def end_offsets(stack: Stack, topic: str) -> dict[int, int]:
    """The end offset of each partition of `topic`, from the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.env["EM_KAFKA_BOOTSTRAP"])
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


@asynccontextmanager
async def second_dispatcher_replica(stack: Stack):
    """A second dispatcher replica in the session's stack, as its port, once the consumer group has
    given it partitions; stopped and forgotten afterwards."""
    replica = await asyncio.to_thread(stack.start_replica, "dispatcher", 2)
    port = stack.ports[replica.name]
    try:
        await asyncio.to_thread(stack.wait_until_ready, replica.name)

        async def has_partitions():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return 'em_consumer_lag{group="em-dispatcher"' in (await client.get("/metrics")).text

        await eventually(has_partitions, timeout=30)
        yield port
    finally:
        try:
            await asyncio.to_thread(replica.stop)
        finally:
            del stack.services[replica.name], stack.ports[replica.name]


async def eventually(check, timeout: float = 20, interval: float = 0.2):
    """Poll `check()` (async, returns a truthy value when satisfied) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
