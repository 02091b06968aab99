"""docker-compose.yml, checked without a Docker engine (every compose check is here): valid
against the Compose spec, every EM_ variable it or the Dockerfile sets is a setting the services
know, every service runs a command or script that exists (the five services under their names),
media storage points at the MinIO service and the bucket its setup creates, and the demo
(deploy/compose-demo) really shows an event delivered: run here against the test session's
stack, with the demo receiver as a process."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from services.devstack import free_port, wait_for_port
from shared.settings import SERVICE_PORTS, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # anchors and merge keys resolved
SERVICES = COMPOSE["services"]
OUR_IMAGE = "event-manager:latest"
DEMO = ROOT / "deploy" / "compose-demo"


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else env


def eventmgr_commands() -> set[str]:
    return set(re.findall(r'add_parser\("([a-z-]+)"', (ROOT / "services" / "cli.py").read_text()))


def test_the_compose_file_is_valid():
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.compose-spec", "docker-compose.yml"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_em_variable_is_a_setting():
    dockerfile_env = re.findall(r"\b(EM_[A-Z_]+)=", (ROOT / "Dockerfile").read_text())
    variables = {(name, key) for name, service in SERVICES.items() for key in environment(service)
                 if key.startswith("EM_")} | {("Dockerfile", key) for key in dockerfile_env}
    assert len(variables) > 10
    unknown = [(where, key) for where, key in variables if key[3:].lower() not in Settings.model_fields]
    assert unknown == [], f"not settings (shared/settings.py): {unknown}"


def check_eventmgr(name: str, service: dict) -> None:
    assert service.get("build") == "." and (ROOT / "Dockerfile").exists(), name
    if "entrypoint" in service:
        assert service["entrypoint"][:2] == ["sh", "-c"], name
        steps = [shlex.split(step) for step in service["entrypoint"][2].split("&&")]
        assert all(step[0] == "eventmgr" and len(step) == 2 and step[1] in eventmgr_commands() for step in steps), name
    else:  # the image's entrypoint is eventmgr
        assert service["command"][0] == "serve" and service["command"][1] in SERVICE_PORTS, name


def check_script(name: str, service: dict) -> None:
    """A stock image running one of our scripts, bind-mounted from the repository."""
    mounts = dict(reversed(volume.split(":")[:2]) for volume in service.get("volumes", []))
    script = service["command"][1]
    folder = next(target for target in mounts if script.startswith(target + "/"))
    assert (ROOT / mounts[folder] / script[len(folder) + 1:]).is_file(), f"{name}: {script} is not in the repository"


def test_every_service_runs_a_command_that_exists():
    for name, service in SERVICES.items():
        image = service["image"]
        if image == OUR_IMAGE:
            check_eventmgr(name, service)
            continue
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        if service.get("command", [None])[0] == "python":
            check_script(name, service)
    assert {"api", "ingest", "matcher", "dispatcher", "scheduler", "migrate"} <= {
        name for name, service in SERVICES.items() if service["image"] == OUR_IMAGE}
    for name in SERVICE_PORTS:  # each service under its own name, as in deploy/k8s
        assert SERVICES[name]["command"] == ["serve", name], name


def test_dependencies_and_volumes_are_declared():
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        assert set(service.get("depends_on", {})) <= set(SERVICES), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared, f"{name}: volume {source} is not declared"
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_media_storage_is_the_minio_bucket_its_setup_creates():
    for name in ("api", "scheduler"):
        env = environment(SERVICES[name])
        url = urlparse(env["EM_MEDIA_URL"])
        assert url.scheme == "s3"
        assert f"mb --ignore-existing store/{url.netloc}" in SERVICES["minio-setup"]["entrypoint"][2]
        endpoint = urlparse(env["AWS_ENDPOINT_URL"])
        assert endpoint.hostname == "minio" and f"{endpoint.port}:{endpoint.port}" in SERVICES["minio"]["ports"]
        minio = environment(SERVICES["minio"])
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
        assert SERVICES[name]["depends_on"]["minio-setup"]["condition"] == "service_completed_successfully"


def test_the_demo_is_given_every_variable_it_reads():
    read = set(re.findall(r'os\.environ\["(DEMO_[A-Z_]+)"\]', (DEMO / "demo.py").read_text()))
    assert read and read <= set(environment(SERVICES["demo"])), read - set(environment(SERVICES["demo"]))
    receiver = urlparse(environment(SERVICES["demo"])["DEMO_ENDPOINT_URL"])
    assert receiver.hostname == "receiver" and str(receiver.port) in SERVICES["receiver"]["command"]


@pytest.fixture
def demo_receiver():
    port = free_port()
    process = subprocess.Popen([sys.executable, str(DEMO / "receiver.py"), str(port)], text=True,
                               env={**os.environ, "RECEIVER_HOST": "127.0.0.1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port)
    yield port, process
    process.terminate()
    process.wait(10)


async def test_the_demo_shows_an_event_delivered(stack, demo_receiver):
    port, receiver = demo_receiver
    receiver_url = f"http://127.0.0.1:{port}"
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO / "demo.py"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DEMO_API_URL": f"http://127.0.0.1:{stack.ports['api']}",
             "DEMO_INGEST_URL": f"http://127.0.0.1:{stack.ports['ingest']}",
             "DEMO_ADMIN_TOKEN": stack.env["EM_ADMIN_TOKEN"], "DEMO_ENDPOINT_URL": receiver_url,
             "DEMO_RECEIVER_URL": receiver_url, "DEMO_TIMEOUT_SECONDS": "90"})
    output = (await asyncio.wait_for(demo.communicate(), 120))[0].decode()
    assert demo.returncode == 0, output
    [event_id] = re.findall(r"demo: event (\S+) delivered to /demo/", output)
    receiver.terminate()
    printed = receiver.communicate(timeout=10)[0]
    assert f'"id": "{event_id}"' in printed, printed
