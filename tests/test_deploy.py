"""The deployment files, validated offline (no Docker engine or cluster here): the compose file
against the Compose spec, the Dockerfile with hadolint, the Kubernetes manifests against the
bundled API schemas, and every manifest agreeing with the services' names and ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from shared.settings import SERVICE_PORTS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint():
    result = run(str(BIN / "hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_are_valid():
    manifests = sorted(str(p) for p in (ROOT / "deploy/k8s").glob("*.yaml") if p.name != "kustomization.yaml")
    result = run(str(BIN / "kubernetes-validate"), "--strict", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(Path(m).name for m in manifests)


def test_every_service_is_deployed_on_its_port():
    deployed = {}
    for path in (ROOT / "deploy/k8s").glob("10-*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] == "Deployment":
                container = document["spec"]["template"]["spec"]["containers"][0]
                deployed[container["args"][1]] = container["ports"][0]["containerPort"]
    assert deployed == SERVICE_PORTS
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {name for name in SERVICE_PORTS} <= set(compose)
    for name in SERVICE_PORTS:
        assert compose[name]["command"] == ["serve", name]
