"""Signing that rotates: server-generated secrets shown once, rotation with a grace period in
which both signatures verify (with the `standardwebhooks` library), revoke-previous, ed25519
(`v1a`) signatures verified with `cryptography` against the published public key."""

from __future__ import annotations

import base64
import re
import time

import asyncpg
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.dispatcher.configs import ConfigurationCache
from services.dispatcher.signing import Signer
from shared.db import asyncpg_dsn
from tests.conftest import eventually, make_tenant, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish

SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]+=*$")


def secret_of(configuration: dict) -> str:
    return configuration["signing_secret"]


def headers_of(request) -> dict:
    return {k.lower(): v for k, v in request.headers.items()}


def verifies(secret: str, request) -> bool:
    try:
        Webhook(secret).verify(request.body, headers_of(request))
    except WebhookVerificationError:
        return False
    return True


async def delivered(source, tenant, receiver, path: str):
    """Publish one event and return the request it arrived as."""
    [event_id] = await publish(source, tenant)

    async def arrived():
        return next((r for r in receiver.requests[path] if r.json()["id"] == event_id), None)

    return await eventually(arrived)


def assert_not_logged(stack, *secrets: str) -> None:
    for log in (stack.data_dir / "logs").glob("*.log"):
        text = log.read_bytes()
        for secret in secrets:
            assert secret.encode() not in text, f"a secret is in {log}"


async def signed_configuration(tenant, receiver, **extra) -> tuple[dict, str]:
    path = unique_path("signed")
    configuration = await realtime_configuration(tenant, receiver.url(path), **extra)
    await subscribe(tenant, configuration["id"])
    await settle()
    return configuration, path


async def test_the_server_generates_a_secret_shown_once_and_revealed_on_request(stack, tenant, source, receiver):
    configuration, path = await signed_configuration(tenant, receiver)
    secret = secret_of(configuration)
    assert SECRET.match(secret) and 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
    assert configuration["signing_secret_set"] is True
    url = f"/v1/delivery-configurations/{configuration['id']}"
    for response in (await tenant.client.get(url), await tenant.client.get("/v1/delivery-configurations"),
                     await tenant.client.patch(url, json={"name": "renamed"})):
        assert response.status_code == 200 and secret not in response.text
    request = await delivered(source, tenant, receiver, path)
    assert verifies(secret, request)
    revealed = await tenant.client.post(f"{url}/signing-secret/reveal")
    assert revealed.status_code == 200 and revealed.json() == {"signing_secret": secret}
    assert_not_logged(stack, secret)
    audit = (await tenant.client.get("/v1/audit-log", params={
        "action": "signing_secret.reveal", "resource_id": configuration["id"]})).json()["data"]
    assert [r["actor"]["id"] for r in audit] == [tenant.application_id] and secret not in str(audit)


async def test_a_configuration_without_a_secret_sends_no_signature_until_rotated(tenant, source, receiver):
    configuration, path = await signed_configuration(tenant, receiver, signing_secret=None)
    assert configuration["signing_secret_set"] is False and configuration["signing_secret"] is None
    request = await delivered(source, tenant, receiver, path)
    assert "webhook-signature" not in headers_of(request)
    url = f"/v1/delivery-configurations/{configuration['id']}/signing-secret"
    assert (await tenant.client.post(f"{url}/reveal")).status_code == 409
    rotated = await tenant.client.post(f"{url}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 200 and rotated.json()["previous_expires_at"] is None  # nothing to overlap
    await settle()
    assert verifies(rotated.json()["signing_secret"], await delivered(source, tenant, receiver, path))


async def test_both_signatures_verify_during_the_grace_period_and_only_the_new_one_after(
        stack, tenant, source, receiver):
    configuration, path = await signed_configuration(tenant, receiver)
    old = secret_of(configuration)
    url = f"/v1/delivery-configurations/{configuration['id']}"
    rotated = await tenant.client.post(f"{url}/signing-secret/rotate", json={"grace_seconds": 3})
    assert rotated.status_code == 200, rotated.text
    new, until = rotated.json()["signing_secret"], rotated.json()["previous_expires_at"]
    assert SECRET.match(new) and new != old and until is not None
    assert new not in (await tenant.client.get(url)).text
    assert (await tenant.client.get(url)).json()["signing_previous_expires_at"] is not None
    await settle()
    request = await delivered(source, tenant, receiver, path)
    signatures = headers_of(request)["webhook-signature"].split(" ")
    assert [s.split(",")[0] for s in signatures] == ["v1", "v1"], "new first, then the previous one"
    assert verifies(new, request) and verifies(old, request)

    async def only_the_new_one():  # once the 3 s are over
        request = await delivered(source, tenant, receiver, path)
        return request if len(headers_of(request)["webhook-signature"].split(" ")) == 1 else None

    request = await eventually(only_the_new_one, timeout=15, interval=0.5)
    assert verifies(new, request) and not verifies(old, request)
    assert (await tenant.client.get(url)).json()["signing_previous_expires_at"] is None
    assert_not_logged(stack, old, new)


async def test_revoke_previous_ends_the_overlap_at_once_and_a_patch_keeps_it(tenant, source, receiver):
    configuration, path = await signed_configuration(tenant, receiver)
    old = secret_of(configuration)
    url = f"/v1/delivery-configurations/{configuration['id']}"
    new = (await tenant.client.post(f"{url}/signing-secret/rotate", json={"grace_seconds": 3600})).json()[
        "signing_secret"]
    # A change of something else neither ends the overlap nor changes the secret.
    assert (await tenant.client.patch(url, json={"name": "renamed"})).json()["signing_previous_expires_at"]
    await settle()
    request = await delivered(source, tenant, receiver, path)
    assert verifies(new, request) and verifies(old, request)
    revoked = await tenant.client.post(f"{url}/signing-secret/revoke-previous")
    assert revoked.status_code == 200
    assert revoked.json() == {"signing_secret_set": True, "signing_previous_expires_at": None}
    await settle()
    request = await delivered(source, tenant, receiver, path)
    assert verifies(new, request) and not verifies(old, request)
    assert len(headers_of(request)["webhook-signature"].split(" ")) == 1


async def test_a_v1a_signature_verifies_with_the_published_public_key(admin, urls, tenant, source, receiver):
    configuration, path = await signed_configuration(tenant, receiver, asymmetric_signing=True)
    assert configuration["asymmetric_signing"] is True
    [key] = (await tenant.client.get("/v1/signing-keys")).json()
    assert key["algorithm"] == "ed25519" and key["public_key"].startswith("whpk_")
    assert "whsk_" not in str(key) and "private" not in str(key)
    other = await make_tenant(admin, urls)
    [other_key] = (await other.client.get("/v1/signing-keys")).json()
    await other.client.aclose()
    assert other_key["public_key"] != key["public_key"], "one key per company"
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"].removeprefix("whpk_")))
    request = await delivered(source, tenant, receiver, path)
    headers = headers_of(request)
    signatures = dict(s.split(",", 1) for s in headers["webhook-signature"].split(" "))
    assert set(signatures) == {"v1", "v1a"}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
    public.verify(base64.b64decode(signatures["v1a"]), signed)  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(signatures["v1a"]), signed + b" ")
    assert verifies(secret_of(configuration), request), "the v1 signature stays beside it"


async def test_another_company_cannot_rotate_reveal_or_revoke(tenant, other_tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    url = f"/v1/delivery-configurations/{configuration['id']}/signing-secret"
    for action, body in (("rotate", {"grace_seconds": 0}), ("reveal", None), ("revoke-previous", None)):
        response = await other_tenant.client.post(f"{url}/{action}", json=body)
        assert response.status_code == 404, (action, response.text)
        assert secret_of(configuration) not in response.text
    assert (await tenant.client.post(f"{url}/reveal")).json()["signing_secret"] == secret_of(configuration)


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 3600 + 1, "soon"])
async def test_a_grace_period_outside_0_to_7_days_is_422_naming_it(tenant, receiver, grace):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    url = f"/v1/delivery-configurations/{configuration['id']}/signing-secret/rotate"
    response = await tenant.client.post(url, json={"grace_seconds": grace})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["grace_seconds"]
    assert (await tenant.client.post(url, json={"grace_seconds": 7 * 24 * 3600})).status_code == 200


def test_the_previous_secret_signs_until_its_time_and_not_after():
    new, old = (base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2))
    signer = Signer.of({"signing_secret": f"whsec_{new}", "signing_secret_previous": f"whsec_{old}",
                        "signing_previous_until": 1000.0})
    assert len(signer.signature("m", "1", b"{}", now=999.9).split(" ")) == 2
    assert len(signer.signature("m", "1", b"{}", now=1000.0).split(" ")) == 1
    assert Signer.of({}) is None


def test_signing_costs_microseconds_per_delivery():
    """Measured, and printed for the report: an HMAC per secret, ed25519 once."""
    body = b'{"id":"ev","data":{"message_id":"8812","status":"delivered"}}' * 8
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    costs = {}
    for name, signer in (
            ("v1", Signer.of({"signing_secret": secret})),
            ("v1 x2 (rotation)", Signer.of({"signing_secret": secret, "signing_secret_previous": secret,
                                             "signing_previous_until": time.time() + 60})),
            ("v1 + v1a", Signer.of({"signing_secret": secret}, Ed25519PrivateKey.generate()))):
        runs = 2000
        started = time.perf_counter()
        for _ in range(runs):
            signer.signature("dlv_1", "1700000000", body)
        costs[name] = (time.perf_counter() - started) / runs * 1e6
    print("signing cost per delivery (µs):", {k: round(v, 1) for k, v in costs.items()})
    assert costs["v1"] < 100 and costs["v1 + v1a"] < 1000


async def test_a_rotated_refresh_token_stored_by_the_dispatcher_keeps_a_newer_signing_secret(stack, tenant, receiver):
    """The dispatcher stores a rotated OAuth refresh token from its cached configuration, which may
    predate a signing-secret rotation: the stored secrets must keep the new signing secret."""
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()), authentication={
        "type": "oauth2", "token_url": receiver.url("/token"), "client_id": "c", "client_secret": "s",
        "grant_type": "refresh_token", "refresh_token": "rt-1"})
    pool = await asyncpg.create_pool(asyncpg_dsn(stack.env["EM_DATABASE_URL"]), min_size=1, max_size=2)
    try:
        cache = ConfigurationCache(pool, stack.env["EM_SECRET_KEY"])
        cached = await cache.get(configuration["id"])  # loaded before the rotation
        url = f"/v1/delivery-configurations/{configuration['id']}/signing-secret"
        new = (await tenant.client.post(f"{url}/rotate", json={"grace_seconds": 60})).json()["signing_secret"]
        await cache.store_refresh_token(cached, "rt-2")
        cache.forget(configuration["id"])
        reloaded = await cache.get(configuration["id"])
    finally:
        await pool.close()
    assert reloaded.secrets["refresh_token"] == "rt-2"
    assert reloaded.secrets["signing_secret"] == new
    assert (await tenant.client.post(f"{url}/reveal")).json()["signing_secret"] == new
