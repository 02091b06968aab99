"""The deployment files, validated without a Docker engine or cluster (docker-compose.yml:
tests/test_compose.py): the Dockerfile with hadolint, and each kustomize overlay of
deploy/k8s rendered (tests/kustomize_subset.py), validated against the Kubernetes API schemas,
scanned by checkov, and checked for what the services need: their ports, locked-down pods, a
shutdown budget that covers the services' own drain, network policies that keep the workers
inside, topics sized by settings. The monitoring examples may only use metrics the code exports,
and every EM_ variable the files set is a setting, documented in docs/operations.md."""

from __future__ import annotations

import copy
import fcntl
import ipaddress
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.devstack import BROKER_PORT_VARIABLE
from shared import netguard
from shared.kafka import Topics
from shared.settings import SERVICE_PORTS, Settings
from tests.kustomize_subset import Unsupported, build

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "production"]
# The oldest Kubernetes the manifests support (the preStop `sleep` action is on by default from
# 1.30) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CHECKOV_INSTALL_SECONDS = 900
CHECKOV_VENV = ROOT / ".venv-tools" / "checkov"
# What no egress rule to "the internet" may reach: the networks the dispatcher's SSRF guard
# refuses (shared/netguard.py; checked against it below), each of which every ipBlock excepts.
PRIVATE_RANGES = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8")]


def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    return tuple(build(K8S / "overlays" / overlay))


def of_kind(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def config(overlay: str) -> dict[str, str]:
    """The EM_ variables every pod gets: the ConfigMap, then the Secret when the overlay has one."""
    variables = dict(of_kind(overlay, "ConfigMap")["event-manager"]["data"])
    variables.update(of_kind(overlay, "Secret").get("event-manager", {}).get("stringData", {}))
    return variables


def settings_of(overlay: str) -> Settings:
    known = {f"EM_{name.upper()}" for name in Settings.model_fields}
    return Settings(**{k[3:].lower(): v for k, v in config(overlay).items() if k in known})


def pod_templates(overlay: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"] for o in rendered(overlay)
            if o["kind"] in ("Deployment", "Job")}


# --- the Dockerfile ------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    result = run(str(BIN / "hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


# --- the renderer ------------------------------------------------------------------------------

def test_the_renderer_merges_patches_and_sets_images_as_kustomize_does(tmp_path):
    # What kustomize's own library printed for the same files (pykustomize 0.1.4, tried once).
    (tmp_path / "base").mkdir()
    (tmp_path / "overlay").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (tmp_path / "base" / "app.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "n"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "registry:5000/app:1.0", "args": ["a", "b"],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "side:1", "resources": {"limits": {"cpu": "1"}}}]}}}}))
    (tmp_path / "overlay" / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["../base"], "patches": [{"path": "patch.yaml"}],
        "images": [{"name": "registry:5000/app", "newTag": "2.0"}]}))
    (tmp_path / "overlay" / "patch.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "n"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "app", "args": ["c"], "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
            {"name": "side", "resources": {"limits": {"cpu": None}, "requests": {"cpu": "1"}}}]}}}}))
    [deployment] = build(tmp_path / "overlay")
    assert deployment["spec"]["replicas"] == 3
    app, side = deployment["spec"]["template"]["spec"]["containers"]
    assert app == {"name": "app", "image": "registry:5000/app:2.0", "args": ["c"],  # other lists: replaced
                   "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}, {"name": "A", "value": "1"}]}
    assert side == {"name": "side", "image": "side:1", "resources": {"limits": {}, "requests": {"cpu": "1"}}}
    (tmp_path / "overlay" / "kustomization.yaml").write_text("resources: [../base]\nreplicas: []\n")
    with pytest.raises(Unsupported, match="replicas"):
        build(tmp_path / "overlay")


# --- every overlay: valid objects that run the five services --------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_objects_valid_for_kubernetes(overlay, version):
    errors = []
    for document in rendered(overlay):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_deployed_on_its_port(overlay):
    deployed, services = {}, of_kind(overlay, "Service")
    for name, deployment in of_kind(overlay, "Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        deployed[container["args"][1]] = container["ports"][0]["containerPort"]
        assert services[name]["spec"]["ports"][0]["port"] == SERVICE_PORTS[name]
        assert services[name]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployed == SERVICE_PORTS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay):
    for name, template in pod_templates(overlay).items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"} <= tmp_volumes, name
            assert "memory" in container["resources"]["limits"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_services_own_shutdown(overlay):
    """SIGTERM comes after the preStop pause; then uvicorn waits for open requests, then the
    loops drain, then consumers commit and connections close (shared/service.py). The pod must
    not be killed before that ends."""
    settings = settings_of(overlay)
    closing = 5  # committing offsets, flushing the producer, closing pools
    for name, template in pod_templates(overlay).items():
        if name == "event-manager-migrate":
            continue
        spec = template["spec"]
        [container] = spec["containers"]
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        needed = pause + settings.graceful_shutdown_seconds + settings.drain_seconds + closing
        assert spec["terminationGracePeriodSeconds"] >= needed, (name, needed)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_and_autoscaling_follow_the_partition_count(overlay):
    settings = settings_of(overlay)
    autoscalers = of_kind(overlay, "HorizontalPodAutoscaler")
    deployments = of_kind(overlay, "Deployment")
    for consumer in ("matcher", "dispatcher"):  # more replicas than partitions would idle
        assert autoscalers[consumer]["spec"]["maxReplicas"] == settings.kafka_partitions
    for name, autoscaler in autoscalers.items():
        assert autoscaler["spec"]["minReplicas"] == deployments[name]["spec"]["replicas"], name


def test_production_is_https_only_replicated_and_bigger_than_dev():
    production, dev = settings_of("production"), settings_of("dev")
    assert production.require_https is True
    assert production.kafka_replication_factor == 3
    assert dev.kafka_replication_factor == 1  # the dev cluster's single broker
    for name, deployment in of_kind("production", "Deployment").items():
        dev_deployment = of_kind("dev", "Deployment")[name]
        assert deployment["spec"]["replicas"] >= 2, name  # one pod lost, one left
        assert deployment["spec"]["replicas"] > dev_deployment["spec"]["replicas"], name
    assert "Secret" not in {o["kind"] for o in rendered("production")}, "apply -k would overwrite the real Secret"


def _documented_first_step_selectors() -> set[str]:
    """The `-l` selectors of docs/operations.md's first `kubectl apply` (install and upgrade)."""
    guide = (ROOT / "docs" / "operations.md").read_text()
    return set(re.findall(r"kubectl apply -k deploy/k8s/overlays/production -l '([^']+)'", guide))


def _label_selector_matches(selector: str, labels: dict) -> bool:
    """kubectl's `-l` for the two forms the guide uses: `key=value` and `key in (a,b)`, comma-joined."""
    for requirement in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        requirement = requirement.strip()
        if match := re.fullmatch(r"(\S+)\s+in\s+\(([^)]*)\)", requirement):
            key, values = match[1], {v.strip() for v in match[2].split(",")}
        else:
            key, value = requirement.split("=", 1)
            values = {value.strip()}
        if labels.get(key.strip()) not in values:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_documented_first_step_applies_everything_the_migrate_job_needs(overlay):
    """Install and upgrade start with `kubectl apply -k ... -l <selector>`: the Job, and the
    Namespace, ServiceAccount, ConfigMap and Secret its pods need, or the pods are refused."""
    selectors = _documented_first_step_selectors()
    assert len(selectors) == 1, f"install and upgrade should use one selector: {selectors}"
    [selector] = selectors
    selected = {(o["kind"], o["metadata"]["name"]) for o in rendered(overlay)
                if _label_selector_matches(selector, o["metadata"].get("labels", {}))}
    job = of_kind(overlay, "Job")["event-manager-migrate"]
    pod = job["spec"]["template"]["spec"]
    needed = {("Job", "event-manager-migrate"), ("Namespace", job["metadata"]["namespace"]),
              ("ServiceAccount", pod["serviceAccountName"])}
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            for kind, reference in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if reference in source:
                    needed.add((kind, source[reference]["name"]))
    rendered_objects = {(o["kind"], o["metadata"]["name"]) for o in rendered(overlay)}
    guide = (ROOT / "docs" / "operations.md").read_text()
    for kind, name in sorted(needed):
        if kind == "Secret" and (kind, name) not in rendered_objects:  # production: made with kubectl first
            assert f"create secret generic {name} " in guide, f"docs/operations.md does not say to create {name}"
            continue
        assert (kind, name) in selected, f"{kind}/{name} is not applied by `-l {selector}`"
    assert not any(kind == "Deployment" for kind, _ in selected), "the first step starts no service"


# --- network policies ------------------------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _rules(overlay: str, labels: dict, direction: str) -> list[dict]:
    """The rules of `direction` ("ingress" or "egress") of every policy that selects a pod so labelled."""
    return [rule for policy in of_kind(overlay, "NetworkPolicy").values()
            if _selects(policy["spec"]["podSelector"], labels)
            and direction.capitalize() in policy["spec"]["policyTypes"]
            for rule in policy["spec"].get(direction, [])]


def _ports(rule: dict) -> set:
    return {port["port"] for port in rule.get("ports", [])} or {"any"}


def test_the_excepted_ranges_are_the_ones_the_ssrf_guard_refuses():
    """The policies keep the workers from every network the dispatcher's guard refuses (Python's
    not-global networks, multicast, and the guard's own list), and each excepted range is one the
    guard knows (the policies may refuse a little more: all of 192.0.0.0/24, say)."""
    guard = [*ipaddress.IPv4Address._constants._private_networks, *ipaddress.IPv6Address._constants._private_networks,
             *(network for network, _ in netguard._SPECIAL_RANGES),
             ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("ff00::/8")]
    for network in guard:
        if network.version == 6 and network.subnet_of(ipaddress.ip_network("::ffff:0:0/96")):
            continue  # IPv4-mapped: IPv4 on the wire, where the IPv4 ranges apply
        assert any(network.version == p.version and network.subnet_of(p) for p in PRIVATE_RANGES), network
    for network in PRIVATE_RANGES:
        assert netguard.address_refusal(network[0], []), f"shared/netguard.py allows {network}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_keep_the_workers_inside(overlay):
    policies = of_kind(overlay, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies.values()), \
        "everything is denied first"
    for name, template in pod_templates(overlay).items():
        labels = template["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        open_to_all = [rule for rule in _rules(overlay, labels, "ingress") if not rule.get("from")]
        assert bool(open_to_all) == (component in ("api", "ingest")), name
        for rule in _rules(overlay, labels, "ingress"):
            for peer in rule.get("from", []):
                assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                assert _ports(rule) == {"http"}
        reachable = set()
        for rule in _rules(overlay, labels, "egress"):
            assert rule.get("to"), f"{name}: an egress rule without `to` opens everything"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    block = peer["ipBlock"]
                    excepted = [ipaddress.ip_network(n) for n in block.get("except", [])]
                    network = ipaddress.ip_network(block["cidr"])
                    for private in PRIVATE_RANGES:  # no way into the cluster or the node
                        if private.version == network.version:
                            assert any(private.subnet_of(e) for e in excepted), (name, block["cidr"], private)
                    reachable.add(("internet", frozenset(_ports(rule))))
                else:
                    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    reachable.add((namespace, frozenset(_ports(rule))))
        expected = {("kube-system", frozenset({53})), ("kafka", frozenset({9092})), ("db", frozenset({5432}))}
        if component == "dispatcher":
            expected.add(("internet", frozenset({"any"})))  # deliveries and token URLs, any port
        if component in ("api", "scheduler"):
            expected.add(("internet", frozenset({443})))  # media storage
        assert reachable == expected, name


def test_the_optional_policies_are_valid_and_open_only_what_they_say():
    """examples/network/allow-otlp.yaml (span export) and the commented metadata rule of
    allow-media-storage are not applied by default; once applied they are valid and narrow."""
    [otlp] = yaml.safe_load_all((EXAMPLES / "network" / "allow-otlp.yaml").read_text())
    text = (K8S / "base" / "network-policies.yaml").read_text()
    commented = re.search(r"^    # - to:\n(?:^    #.*\n)+", text, re.MULTILINE)[0]
    rule = yaml.safe_load("\n".join(line.replace("    # ", "    ", 1) for line in commented.splitlines()))
    media = copy.deepcopy(of_kind("production", "NetworkPolicy")["allow-media-storage"])
    media["spec"]["egress"] += rule
    for policy in (otlp, media):
        kubernetes_validate.validate(policy, KUBERNETES_VERSIONS[-1], strict=True)
    assert otlp["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "event-manager"}}
    [otlp_rule] = otlp["spec"]["egress"]
    assert _ports(otlp_rule) == {4317, 4318} and "ipBlock" not in otlp_rule["to"][0]
    [metadata] = rule
    assert {peer["ipBlock"]["cidr"] for peer in metadata["to"]} == {"169.254.169.254/32", "169.254.170.23/32"}
    assert _ports(metadata) == {80}
    assert not _selects(media["spec"]["podSelector"], {"app.kubernetes.io/component": "dispatcher"})


# --- checkov ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov in a virtualenv of its own (it pins many packages the project also uses), installed
    by `make tools` from tools/checkov-requirements.txt (every package hashed). `make test` has
    done it already; run alone, this runs the same target (a few minutes on a loaded machine)."""
    CHECKOV_VENV.parent.mkdir(exist_ok=True)
    with open(CHECKOV_VENV.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install when several test processes start at once
        result = run("make", "--no-print-directory", "tools", timeout=CHECKOV_INSTALL_SECONDS)
        assert result.returncode == 0, result.stdout + result.stderr
    return CHECKOV_VENV / "bin" / "checkov"


@pytest.mark.timeout(CHECKOV_INSTALL_SECONDS + 300)  # the install (first run only), then the scan
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing_unexplained(overlay, checkov, tmp_path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered(overlay), sort_keys=False))
    # --skip-download: no call to the vendor's platform for guidelines (nothing sent).
    result = run(str(checkov), "--compact", "--output", "json", "--skip-download", "--framework", "kubernetes",
                 "--file", str(manifest), timeout=300)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report (exit {result.returncode}):\n"
                    f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}")
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert result.returncode == 0, result.stderr
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason.strip()) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


# --- settings and their documentation ---------------------------------------------------------

def _variables(text: str) -> set[str]:
    return set(re.findall(r"\bEM_[A-Z0-9_]*[A-Z0-9]\b", text))


def _known_variables() -> set[str]:
    """The settings, and the dev-mode variables `eventmgr dev` reads itself (services/devstack.py's
    `*_VARIABLE` constants: the embedded broker's port and storage)."""
    devstack = (ROOT / "services" / "devstack.py").read_text()
    dev_mode = set(re.findall(r'^[A-Z_]+_VARIABLE = "(EM_[A-Z0-9_]+)"$', devstack, re.MULTILINE))
    assert BROKER_PORT_VARIABLE in dev_mode
    return {f"EM_{name.upper()}" for name in Settings.model_fields} | dev_mode


def test_every_em_variable_the_deployment_files_set_is_a_setting():
    files = [*(ROOT / "deploy").rglob("*.yaml")]  # docker-compose.yml: tests/test_compose.py
    unknown = {f"{path.relative_to(ROOT)}: {name}" for path in files
               for name in _variables(path.read_text()) - _known_variables()}
    assert not unknown, f"not a setting (shared/settings.py): {sorted(unknown)}"


def test_every_setting_is_documented_in_the_operations_guide():
    documented = _variables((ROOT / "docs" / "operations.md").read_text())
    missing = _known_variables() - documented
    assert not missing, f"add to docs/operations.md, Configuration reference: {sorted(missing)}"
    stale = documented - _known_variables()
    assert not stale, f"docs/operations.md names variables no setting reads: {sorted(stale)}"


# --- monitoring and Kafka examples -------------------------------------------------------------

EXAMPLES = K8S / "examples"


def exported_metrics() -> set[str]:
    """Every series name the services expose: the prometheus_client metrics defined in services/
    and shared/, with the suffixes the client adds, and the client's own process_/python_ ones."""
    names = set()
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]:
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:][a-z0-9_:]*)\"",
                                     path.read_text()):
            if kind == "Counter":
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind in ("Histogram", "Summary"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            else:
                names.add(name)
    return names


def _used_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\bem_[a-z0-9_]+\b", expression))


def _alert_rules() -> dict[str, dict]:
    rules = yaml.safe_load((EXAMPLES / "monitoring" / "prometheus-rules.yaml").read_text())
    return {rule["alert"]: rule for group in rules["spec"]["groups"] for rule in group["rules"] if "alert" in rule}


def test_alerts_cover_the_failure_modes_using_real_metrics():
    exported, alerts = exported_metrics(), _alert_rules()
    assert {"em_dispatcher_breakers", "em_consumer_lag", "em_dead_letters_total"} <= exported
    for alert, rule in alerts.items():
        used = _used_metrics(rule["expr"])
        assert used, f"{alert} uses no em_ metric"
        assert used <= exported, f"{alert} uses metrics the code does not export: {used - exported}"
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["runbook_url"], alert
    covered = {metric for rule in alerts.values() for metric in _used_metrics(rule["expr"])}
    for failure_mode in ("em_consumer_lag", "em_dispatcher_deliveries_total", "em_dead_letters_total",
                         "em_scheduler_files_total", "em_dispatcher_breakers"):
        assert failure_mode in covered, f"no alert on {failure_mode}"


def test_the_dashboard_uses_only_real_metrics():
    dashboard = json.loads((EXAMPLES / "monitoring" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 8
    used = set().union(*(_used_metrics(expression) for expression in expressions))
    assert used <= exported_metrics(), used - exported_metrics()


def test_service_monitors_scrape_every_service_and_authenticate_on_public_ports():
    monitors = list(yaml.safe_load_all((EXAMPLES / "monitoring" / "service-monitors.yaml").read_text()))
    services = of_kind("production", "Service")
    scraped = {}
    for monitor in monitors:
        selected = [name for name, service in services.items()
                    if _selects(monitor["spec"]["selector"], service["metadata"]["labels"])]
        for name in selected:
            scraped[name] = monitor["spec"]["endpoints"][0]
    assert set(scraped) == set(SERVICE_PORTS)
    for name, endpoint in scraped.items():
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        authenticated = endpoint.get("authorization", {}).get("credentials", {}).get("key") == "EM_METRICS_TOKEN"
        assert authenticated == (name in ("api", "ingest")), name


def test_the_strimzi_example_matches_the_settings():
    production = settings_of("production")
    documents = [d for path in sorted((EXAMPLES / "strimzi").glob("*.yaml"))
                 for d in yaml.safe_load_all(path.read_text())]
    [kafka] = [d for d in documents if d["kind"] == "Kafka"]
    cluster, namespace = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    assert config("production")["EM_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap.{namespace}.svc:9092"
    topics = {d["spec"]["topicName"]: d["spec"] for d in documents if d["kind"] == "KafkaTopic"}
    names = Topics.of(production)
    assert set(topics) == {names.events, names.deliveries, names.changes}
    for name, spec in topics.items():
        assert spec["partitions"] == (1 if name == names.changes else production.kafka_partitions), name
        assert spec["replicas"] == production.kafka_replication_factor, name
        assert spec["config"]["min.insync.replicas"] == production.kafka_replication_factor - 1, name


def test_no_file_in_deploy_k8s_escapes_the_checks():
    """Every file of a kustomization directory is one of its resources or patches (so it is
    rendered and checked above), and the examples are the ones the tests above read."""
    for kustomization in K8S.rglob("kustomization.yaml"):
        folder = kustomization.parent
        listed = yaml.safe_load(kustomization.read_text())
        used = {*listed.get("resources", []), *(patch["path"] for patch in listed.get("patches", []))}
        files = {path.name for path in folder.iterdir() if path.is_file()} - {"kustomization.yaml"}
        assert files <= used, f"{folder.relative_to(ROOT)}: not in its kustomization: {files - used}"
    examples = {path.relative_to(EXAMPLES).as_posix() for path in EXAMPLES.rglob("*") if path.is_file()}
    assert examples == {"monitoring/prometheus-rules.yaml", "monitoring/grafana-dashboard.json",
                        "monitoring/service-monitors.yaml", "strimzi/kafka.yaml", "strimzi/topics.yaml",
                        "network/allow-otlp.yaml"}
    assert {path.name for path in K8S.iterdir()} == {"base", "overlays", "examples"}
