"""`eventmgr dev` says what is wrong: it refuses to start when a port it needs is taken, its
readiness probe only counts an answer from its own process, and a service that keeps dying is
given up on with the tail of its log. Real processes, real sockets; no stack fixture."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import psutil
import pytest

from services.devstack import (
    MAX_RESTARTS,
    SERVICES,
    ServiceProcess,
    Stack,
    StackError,
    free_port,
    wait_for_ready,
)

REPO = Path(__file__).resolve().parent.parent


def dev_env(data_dir: Path, **overrides: str) -> dict:
    """The environment of a fresh `eventmgr dev` on free ports with its own data dir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EM_")}
    env["EM_DATA_DIR"] = str(data_dir)
    for name in SERVICES:
        env[f"EM_{name.upper()}_PORT"] = str(free_port())
    env["EM_DEV_BROKER_PORT"] = str(free_port())
    env.update(overrides)
    return env


def start_dev(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.cli", "dev"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_dev(dev: subprocess.Popen) -> None:
    """SIGTERM lets `eventmgr dev` stop its services, broker and database; killing it would leave them running."""
    if dev.poll() is None:
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)


def run_dev(env: dict, timeout: float) -> tuple[int, str, float]:
    """Run `eventmgr dev` until it exits by itself (which it must within `timeout`)."""
    started = time.monotonic()
    dev = start_dev(env)
    try:
        output, _ = dev.communicate(timeout=timeout)
    finally:
        stop_dev(dev)
    return dev.returncode, output, time.monotonic() - started


@pytest.fixture
def data_dir():
    """A data dir outside pytest's basetemp: every pytest session that starts resets that tree to
    mode 0700, which locks out the embedded PostgreSQL (it runs as another user when we are root)."""
    folder = Path(tempfile.mkdtemp(prefix="em-devstack-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def held_port():
    """A port held by a plain listener this test owns."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variable", ["EM_MATCHER_PORT", "EM_DEV_BROKER_PORT"])
def test_dev_refuses_a_taken_port_naming_it_its_holder_and_the_variable(data_dir, held_port, variable):
    code, output, seconds = run_dev(dev_env(data_dir, **{variable: str(held_port)}), timeout=30)

    assert code != 0, output
    assert f"port {held_port} ({variable})" in output, output
    assert f"pid {os.getpid()}" in output, output  # what holds it: this test
    assert "Event Manager is up" not in output
    assert not (data_dir / "postgres").exists(), "refused before starting anything"
    print(f"refused in {seconds:.1f}s:\n{output}")


@pytest.mark.timeout(60)
def test_dev_refuses_a_second_stack_on_the_same_data_dir(tmp_path):
    first = Stack(data_dir=tmp_path, ports={})
    first.claim(broker_port=free_port())  # holds the data dir as a running `eventmgr dev` would

    code, output, _ = run_dev(dev_env(tmp_path), timeout=30)

    assert code != 0, output
    assert "EM_DATA_DIR" in output and f"pid {os.getpid()}" in output, output
    assert not (tmp_path / "postgres").exists()


def test_a_port_named_twice_is_refused(tmp_path):
    port = free_port()
    stack = Stack(data_dir=tmp_path, ports={"api": port, "ingest": port})
    with pytest.raises(StackError, match=f"port {port} is set for both EM_API_PORT and EM_INGEST_PORT"):
        stack.claim(broker_port=free_port())


class ReadyHandler(SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def ready_server_process(port: int, log_path: Path) -> subprocess.Popen:
    """A child process that answers 200 on /readyz at `port`, like a service that is up."""
    code = ("import sys; from http.server import HTTPServer; from tests.test_devstack import ReadyHandler; "
            "HTTPServer(('127.0.0.1', int(sys.argv[1])), ReadyHandler).serve_forever()")
    return subprocess.Popen([sys.executable, "-c", code, str(port)], cwd=REPO,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


@pytest.mark.timeout(30)
def test_readiness_counts_only_an_answer_from_the_service_own_process(tmp_path):
    """Another process answering 200 on the port (another stack's service) is not our service being ready."""
    impostor = HTTPServer(("127.0.0.1", 0), ReadyHandler)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    port = impostor.server_address[1]
    own_port = free_port()
    service = ServiceProcess("api", {}, tmp_path / "api.log",
                             process=ready_server_process(own_port, tmp_path / "api.log"))
    try:
        with pytest.raises(TimeoutError, match=f"does not listen on port {port}.*pid {os.getpid()}"):
            wait_for_ready(port, service, timeout=3)
        wait_for_ready(own_port, service, timeout=20)  # its own port, held by it: ready
    finally:
        impostor.shutdown()
        service.stop(timeout=5)


@pytest.mark.timeout(60)
def test_a_service_that_keeps_dying_is_given_up_on_with_its_log_tail(tmp_path):
    """The supervisor loop of a running stack: a service that exits at every start."""
    stack = Stack(data_dir=tmp_path, ports={"matcher": free_port()})
    stack.env = {**os.environ, "EM_DATABASE_URL": "postgresql://nowhere/db", "EM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                 "EM_SECRET_KEY": "short", "EM_MATCHER_PORT": str(stack.ports["matcher"])}
    service = stack.start_service("matcher")
    deadline = time.monotonic() + 30
    try:
        with pytest.raises(StackError) as given_up:
            while time.monotonic() < deadline:
                service.process.wait(10)  # wait for each exit, then let the supervisor act on it
                stack.supervise_once()
    finally:
        service.stop(timeout=5)
    report = str(given_up.value)
    assert service.restarts == MAX_RESTARTS
    assert f"matcher exited {MAX_RESTARTS + 1} times" in report and "giving up" in report, report
    assert "EM_SECRET_KEY must be a real secret" in report, report  # the log tail
    assert not service.alive()


@pytest.mark.timeout(90)
def test_dev_gives_up_on_a_crash_looping_service_and_exits_non_zero(data_dir):
    """`eventmgr dev` end to end: every service refuses a too-short secret key at start."""
    code, output, seconds = run_dev(dev_env(data_dir, EM_SECRET_KEY="short"), timeout=60)

    assert code != 0, output
    assert "Event Manager is up" not in output
    assert "api exited" in output and "giving up" in output, output
    assert "EM_SECRET_KEY must be a real secret of at least 16 characters" in output, output
    assert output.count("restarting") == MAX_RESTARTS, output  # each restart was said on the console
    print(f"gave up after {seconds:.1f}s:\n{output}")


@pytest.mark.timeout(120)
def test_dev_stops_and_exits_non_zero_when_a_running_service_keeps_dying(data_dir):
    """After "up": the matcher is killed at every start; the console says so each time, then
    `eventmgr dev` gives up, stops everything and exits non-zero."""
    dev = start_dev(dev_env(data_dir))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(dev.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("Event Manager is up" in line for line in lines):
            assert dev.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        services = psutil.Process(dev.pid).children()  # the broker and the five services
        killed = set()
        while dev.poll() is None and time.monotonic() < deadline:
            for child in psutil.Process(dev.pid).children():
                with contextlib.suppress(psutil.Error):
                    if child.pid not in killed and child.cmdline()[-2:] == ["serve", "matcher"]:
                        child.kill()
                        killed.add(child.pid)
            time.sleep(0.02)
        code = dev.wait(30)
    finally:
        stop_dev(dev)
    reader.join(5)
    output = "".join(lines)
    assert code == 1, output
    assert len(killed) == MAX_RESTARTS + 1
    assert output.count("matcher exited (killed by signal 9); restarting") == MAX_RESTARTS, output
    assert "matcher exited 6 times within 60 s (last: killed by signal 9); giving up" in output, output
    assert "last lines of" in output and "matcher.log" in output
    _, still_running = psutil.wait_procs(services, timeout=10)
    assert still_running == [], "everything is stopped"
