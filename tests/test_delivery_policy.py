"""A delivery configuration's own policy on the wire, against real servers on 127.0.0.1: custom
headers, PUT, its timeout, its retry schedule and retry_on (and tracking that says why a retry
happened); API keys; mutual TLS against a TLS server that requires a client certificate from a
throwaway CA; OAuth client authentication and audience/resource at the token server; 422 for
each bad field; secrets never in a response or a log."""

from __future__ import annotations

import ssl
import uuid

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from services.devstack import free_port
from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import attempts_of, publish, wait_for_status
from tests.pki import Pki

HEADER_SECRET = "hdr-" + uuid.uuid4().hex
API_KEY = "key-" + uuid.uuid4().hex


async def delivering(tenant, url: str, **extra) -> dict:
    configuration = await realtime_configuration(tenant, url, **extra)
    await subscribe(tenant, configuration["id"])
    await settle()
    return configuration


async def test_custom_headers_put_and_an_api_key_arrive_and_are_never_shown(tenant, source, receiver, stack):
    path = unique_path("policy")
    configuration = await delivering(
        tenant, receiver.url(path),
        authentication={"type": "api_key", "header_name": "X-API-Key", "api_key": API_KEY},
        policy={"headers": {"X-Tenant": "acme", "X-Shared-Token": HEADER_SECRET}, "method": "PUT",
                "timeout_seconds": 5})
    assert configuration["authentication"] == {"type": "api_key", "header_name": "X-API-Key", "api_key_set": True}
    assert configuration["policy"] == {"header_names": ["X-Tenant", "X-Shared-Token"], "method": "PUT",
                                       "timeout_seconds": 5.0, "ca_bundle_set": False}
    [event_id] = await publish(source, tenant)
    [request] = await receiver.wait_for(path, 1)
    assert request.method == "PUT"
    assert request.headers["X-Tenant"] == "acme"
    assert request.headers["X-Shared-Token"] == HEADER_SECRET
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Content-Type"] == "application/json" and "webhook-id" in request.headers
    await wait_for_status(tenant, event_id, "delivered")
    [attempt] = await attempts_of(tenant, event_id)
    assert attempt["policy"]["method"] == "PUT" and attempt["policy"]["timeout_seconds"] == 5
    assert attempt["policy"]["decision"] == "delivered"
    for response in (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}"),
                     await tenant.client.get("/v1/delivery-configurations"),
                     await tenant.client.get(f"/v1/events/{event_id}/attempts")):
        assert HEADER_SECRET not in response.text and API_KEY not in response.text
    # A PATCH of something else keeps the policy and its secrets.
    patched = await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}", json={"name": "x"})
    assert patched.json()["policy"]["header_names"] == ["X-Tenant", "X-Shared-Token"]
    assert_not_logged(stack, HEADER_SECRET, API_KEY)


def assert_not_logged(stack, *secrets: str) -> None:
    for log in (stack.data_dir / "logs").glob("*.log"):
        text = log.read_bytes()
        for secret in secrets:
            assert secret.encode() not in text, f"{secret} in {log}"


async def test_a_configuration_without_policy_posts_and_records_no_policy_on_success(tenant, source, receiver):
    path = unique_path("plain")
    await delivering(tenant, receiver.url(path))
    [event_id] = await publish(source, tenant)
    [request] = await receiver.wait_for(path, 1)
    assert request.method == "POST"
    await wait_for_status(tenant, event_id, "delivered")
    [attempt] = await attempts_of(tenant, event_id)
    assert attempt["policy"] is None  # the operator's defaults, nothing to explain


async def test_the_configured_timeout_fires_and_is_recorded(tenant, source, receiver):
    # The operator's timeout in tests is 2 s: an answer after 1.5 s would arrive in time.
    path = unique_path("slow")
    receiver.script(path, delay=1.5)
    await delivering(tenant, receiver.url(path), policy={"timeout_seconds": 1, "retry_schedule": []})
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "failed")
    [attempt] = await attempts_of(tenant, event_id)
    assert attempt["error"] == "timeout after 1s"
    assert 900 <= attempt["duration_ms"] < 1900  # the operator's 2 s would have let the answer in
    assert attempt["policy"]["timeout_seconds"] == 1
    assert attempt["policy"]["failure"] == "timeout"
    assert attempt["policy"]["decision"] == "failed" and attempt["policy"]["max_attempts"] == 1


async def test_the_retry_schedule_override_and_tracking_say_why(tenant, source, receiver):
    # The operator's schedule in tests is three attempts; this configuration makes two.
    path = unique_path("retry")
    receiver.script(path, default=503)
    await delivering(tenant, receiver.url(path), policy={"retry_schedule": [1]})
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "failed")
    first, second = await attempts_of(tenant, event_id)
    assert first["policy"] == {"timeout_seconds": 2.0, "method": "POST", "attempt": 1, "max_attempts": 2,
                               "retry_on": "default", "decision": "pending_retry", "failure": "5xx",
                               "next_delay_seconds": 1.0, "retried_because": "5xx"}
    assert second["policy"]["attempt"] == 2 and second["policy"]["decision"] == "failed"
    assert "retried_because" not in second["policy"]
    assert len(receiver.requests[path]) == 2


async def test_retry_on_retries_only_the_classes_named(tenant, source, receiver):
    retried, final = unique_path("retry-on"), unique_path("retry-on")
    receiver.script(retried, statuses=[503], default=200)
    receiver.script(final, default=429)
    policy = {"retry_on": ["5xx", "timeout"], "retry_schedule": [1, 1]}
    first = await delivering(tenant, receiver.url(retried), policy=policy)
    second = await delivering(tenant, receiver.url(final), policy=policy)
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered", configuration_id=first["id"])
    await wait_for_status(tenant, event_id, "failed", configuration_id=second["id"])
    attempts = await attempts_of(tenant, event_id)
    to_final = [a for a in attempts if a["endpoint_url"].endswith(final)]
    assert [a["http_status"] for a in to_final] == [429]  # 429 is not in retry_on: no second attempt
    assert to_final[0]["policy"]["failure"] == "429" and to_final[0]["policy"]["retry_on"] == ["5xx", "timeout"]
    to_retried = [a for a in attempts if a["endpoint_url"].endswith(retried)]
    assert [a["http_status"] for a in to_retried] == [503, 200]
    assert to_retried[0]["policy"]["retried_because"] == "5xx"


# --- 422 for each bad field -----------------------------------------------------------------

def _pem_material(**options) -> dict:
    return Pki().client(**options)


@pytest.mark.parametrize(("extra", "loc", "says"), [
    ({"policy": {"headers": {"Content-Type": "text/plain"}}}, ["policy", "headers"], "'Content-Type' is reserved"),
    ({"policy": {"headers": {"host": "x"}}}, ["policy", "headers"], "'host' is reserved"),
    ({"policy": {"headers": {"Authorization": "x"}}}, ["policy", "headers"], "'Authorization' is reserved"),
    ({"policy": {"headers": {"User-Agent": "x"}}}, ["policy", "headers"], "'User-Agent' is reserved"),
    ({"policy": {"headers": {"webhook-id": "x"}}}, ["policy", "headers"], "'webhook-id' is reserved"),
    ({"policy": {"headers": {"Transfer-Encoding": "x"}}}, ["policy", "headers"], "reserved"),
    ({"policy": {"headers": {"Connection": "x"}}}, ["policy", "headers"], "reserved"),
    ({"policy": {"headers": {"X Bad": "x"}}}, ["policy", "headers", "X Bad", "[key]"], "pattern"),
    ({"policy": {"headers": {"X-Ok": "a\r\nX-Injected: 1"}}}, ["policy", "headers", "X-Ok"], "pattern"),
    ({"policy": {"timeout_seconds": 0}}, ["policy", "timeout_seconds"], "greater than or equal to 1"),
    ({"policy": {"timeout_seconds": 61}}, ["policy", "timeout_seconds"], "less than or equal to 60"),
    ({"policy": {"method": "GET"}}, ["policy", "method"], "'POST' or 'PUT'"),
    ({"policy": {"retry_schedule": [0.5]}}, ["policy", "retry_schedule", 0], "from 1 to 86400 seconds"),
    ({"policy": {"retry_schedule": [5, 86401]}}, ["policy", "retry_schedule", 1], "from 1 to 86400 seconds"),
    ({"policy": {"retry_schedule": [1] * 20}}, ["policy", "retry_schedule"], "at most 20 attempts"),
    ({"policy": {"retry_on": ["4xx"]}}, ["policy", "retry_on", 0], "'5xx'"),
    ({"policy": {"ca_bundle": "garbage"}}, ["policy", "ca_bundle"], "not PEM X.509 certificates"),
    ({"authentication": {"type": "api_key", "header_name": "Content-Type", "api_key": "k"}},
     ["authentication", "api_key", "header_name"], "reserved"),
    ({"authentication": {"type": "api_key", "header_name": "X-Key", "api_key": "k"},
      "policy": {"headers": {"x-key": "v"}}}, ["policy", "headers", "x-key"], "carries the API key"),
    ({"authentication": {"type": "mtls", "certificate": "garbage", "private_key": "garbage"}},
     ["authentication", "certificate"], "not a PEM X.509 certificate"),
    ({"authentication": {"type": "mtls", **_pem_material(), "private_key": "garbage"}},
     ["authentication", "private_key"], "not a PEM private key"),
    ({"authentication": {"type": "mtls", **_pem_material(other_key=True)}},
     ["authentication", "private_key"], "does not belong to the certificate"),
    ({"authentication": {"type": "mtls", **_pem_material(expired=True)}},
     ["authentication", "certificate"], "expired"),
    ({"authentication": {"type": "mtls", **_pem_material(), "ca_bundle": "garbage"}},
     ["authentication", "ca_bundle"], "not PEM X.509 certificates"),
    ({"authentication": {"type": "oauth2", "token_url": "http://127.0.0.1:1/token", "client_id": "c",
                         "client_secret": "s", "grant_type": "client_credentials", "client_auth_method": "jwt"}},
     ["authentication", "oauth2", "client_auth_method"], "client_secret_basic"),
])
async def test_bad_policy_and_authentication_fields_are_422_naming_them(tenant, receiver, extra, loc, says):
    body = {"name": "bad", "mode": "realtime", "endpoints": [{"url": receiver.url("/bad")}], **extra}
    response = await tenant.client.post("/v1/delivery-configurations", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["loc"] == loc and says in e["msg"] for e in errors), errors
    assert "BEGIN" not in response.text and "PRIVATE" not in response.text  # no PEM echoed back


async def test_a_policy_is_for_realtime_delivery_only(tenant):
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "s", "mode": "scheduled", "schedule": {"simple": "daily"}, "policy": {"method": "PUT"}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["policy"]


# --- mutual TLS -------------------------------------------------------------------------------

@pytest.fixture
async def tls_server(tmp_path):
    """An https server on 127.0.0.1 that requires a client certificate from the test CA and
    records the subject of each one it saw."""
    pki = Pki()
    certificate, key = pki.server()
    (tmp_path / "server.pem").write_text(certificate + key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tmp_path / "server.pem")
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert")
        seen.append(dict(pair[0] for pair in peer["subject"])["commonName"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    pki.url = f"https://127.0.0.1:{port}/mtls"
    pki.seen = seen
    yield pki
    await runner.cleanup()


async def test_mutual_tls_presents_the_client_certificate(tenant, source, tls_server, stack):
    client = tls_server.client()
    configuration = await delivering(tenant, tls_server.url, authentication={
        "type": "mtls", **client, "ca_bundle": tls_server.ca_pem})
    certificate = x509.load_pem_x509_certificate(client["certificate"].encode())
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert configuration["authentication"] == {
        "type": "mtls", "certificate_set": True, "private_key_set": True, "ca_bundle_set": True,
        "certificate_subject": f"CN={common_name}",
        "certificate_expires_at": certificate.not_valid_after_utc.isoformat()}
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    assert tls_server.seen == [common_name]
    fetched = (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).text
    assert "PRIVATE KEY" not in fetched and "CERTIFICATE" not in fetched
    assert_not_logged(stack, client["private_key"].splitlines()[1])


async def test_without_the_client_certificate_the_server_refuses(tenant, source, tls_server):
    # It trusts the server (the CA bundle) but presents no certificate.
    await delivering(tenant, tls_server.url, policy={"ca_bundle": tls_server.ca_pem, "retry_schedule": []})
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "failed")
    [attempt] = await attempts_of(tenant, event_id)
    assert attempt["http_status"] is None and attempt["policy"]["failure"] == "connection", attempt
    assert tls_server.seen == []


async def test_tls_verification_stays_on(tenant, source, tls_server):
    # A client certificate but no CA bundle: the server's certificate from a private CA is not trusted.
    await delivering(tenant, tls_server.url, authentication={"type": "mtls", **tls_server.client()},
                     policy={"retry_schedule": []})
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "failed")
    [attempt] = await attempts_of(tenant, event_id)
    # Refused by us (the server is not trusted), not by the server for want of a certificate.
    assert "certificate_verify_failed" in attempt["error"].lower(), attempt
    assert tls_server.seen == []


# --- OAuth client authentication, audience and resource --------------------------------------

@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_oauth_client_authentication_and_audience_reach_the_token_server(tenant, source, token_server,
                                                                               method):
    path = f"/{method}-{uuid.uuid4().hex[:6]}"
    configuration = await delivering(tenant, token_server.resource_url(path), authentication={
        "type": "oauth2", "token_url": token_server.token_url, "client_id": "em-client",
        "client_secret": "em-client-secret", "grant_type": "client_credentials", "client_auth_method": method,
        "audience": "https://crm.example.com/api", "resource": "https://crm.example.com/"})
    assert configuration["authentication"]["client_auth_method"] == method
    assert configuration["authentication"]["audience"] == "https://crm.example.com/api"
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    [form] = token_server.requests
    [headers] = token_server.request_headers
    assert form["audience"] == "https://crm.example.com/api" and form["resource"] == "https://crm.example.com/"
    if method == "client_secret_post":
        assert form["client_id"] == "em-client" and form["client_secret"] == "em-client-secret"
        assert "Authorization" not in headers
    else:
        assert headers["Authorization"].startswith("Basic ") and "client_secret" not in form
    body = orjson.dumps((await tenant.client.get("/v1/delivery-configurations")).json())
    assert b"em-client-secret" not in body
