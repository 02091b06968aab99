"""Authentication of deliveries against real servers: Basic, and OAuth 2.0 with each grant type
against an authlib token endpoint whose protected resource accepts only tokens it issued."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, wait_for_status


async def test_basic_authentication_is_sent_and_never_shown(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(
        tenant, receiver.url(path), authentication={"type": "basic", "username": "crm", "password": "pa:ss"})
    assert configuration["authentication"] == {"type": "basic", "username": "crm", "password_set": True}
    assert "pa:ss" not in str(configuration)
    await subscribe(tenant, configuration["id"])
    await settle()
    await publish(source, tenant)
    [request] = await receiver.wait_for(path, 1)
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"crm:pa:ss").decode()
    fetched = (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).text
    assert "pa:ss" not in fetched


async def oauth_configuration(tenant, token_server, path, **authentication):
    auth = {"type": "oauth2", "token_url": token_server.token_url, "client_id": "em-client",
            "client_secret": "em-client-secret", **authentication}
    configuration = await realtime_configuration(tenant, token_server.resource_url(path), authentication=auth)
    await subscribe(tenant, configuration["id"])
    await settle()
    return configuration


async def test_client_credentials_token_is_fetched_once_and_shared(tenant, source, token_server):
    path = "/cc-" + uuid.uuid4().hex[:6]
    configuration = await oauth_configuration(tenant, token_server, path, grant_type="client_credentials",
                                              scope="Reporting")
    assert configuration["authentication"]["client_secret_set"] is True
    assert "em-client-secret" not in str(configuration)
    ids = await publish(source, tenant, count=20)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")
    assert len(token_server.resource_calls[f"/resource{path}"]) == 20
    assert len(token_server.requests) == 1, "concurrent deliveries must share one token request"
    assert token_server.requests[0]["grant_type"] == "client_credentials"
    assert token_server.requests[0]["scope"] == "Reporting"


async def test_password_grant(tenant, source, token_server):
    path = "/pw-" + uuid.uuid4().hex[:6]
    await oauth_configuration(tenant, token_server, path, grant_type="password", username="crm-user",
                              password="crm-password")
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    assert token_server.requests[0]["grant_type"] == "password"
    assert token_server.requests[0]["username"] == "crm-user"


async def test_refresh_token_rotation_is_stored_and_a_401_refreshes_once(tenant, source, token_server):
    path = "/rt-" + uuid.uuid4().hex[:6]
    refresh_token = token_server.issue_refresh_token("em-client")
    await oauth_configuration(tenant, token_server, path, grant_type="refresh_token", refresh_token=refresh_token)
    [first] = await publish(source, tenant)
    await wait_for_status(tenant, first, "delivered")
    assert token_server.refresh_tokens[refresh_token].revoked, "the server rotated the refresh token"

    # The resource server forgets every access token: the next delivery gets a 401, the
    # dispatcher refreshes with the *rotated* refresh token, and the retry succeeds.
    token_server.revoke_access_tokens()
    [second] = await publish(source, tenant)
    delivery = await wait_for_status(tenant, second, "delivered")
    assert delivery["attempt_count"] == 1
    attempts = (await tenant.client.get(f"/v1/events/{second}/attempts")).json()
    assert [a["http_status"] for a in attempts] == [401, 200]
    assert len(token_server.requests) == 2
    assert token_server.requests[1]["refresh_token"] != refresh_token


async def test_a_refresh_token_rotated_by_another_replica_is_the_one_refreshed_with(stack, tenant, source,
                                                                                     token_server):
    """A configuration moves between dispatcher replicas with its partition, and the replica that
    gets it may hold a copy from before another one rotated the refresh token: it refreshes with
    the token stored now, not its copy's, which the server refuses once replaced."""
    from types import SimpleNamespace

    from services.dispatcher.configs import ConfigurationCache
    from shared.db import create_pool

    path = "/moved-" + uuid.uuid4().hex[:6]
    configuration = await oauth_configuration(tenant, token_server, path, grant_type="refresh_token",
                                              refresh_token=token_server.issue_refresh_token("em-client"))
    [first] = await publish(source, tenant)
    await wait_for_status(tenant, first, "delivered")
    [held] = [value for value, stored in token_server.refresh_tokens.items() if not stored.revoked]

    # Another replica refreshes meanwhile: the token the dispatcher holds is replaced, and stored.
    token_server.refresh_tokens[held].revoked = True
    replacement = token_server.issue_refresh_token("em-client")
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=1)
    try:
        other_replica = ConfigurationCache(pool, stack.env["EM_SECRET_KEY"])
        await other_replica.store_refresh_token(SimpleNamespace(id=configuration["id"], secrets={}), replacement)
    finally:
        await pool.close()

    token_server.revoke_access_tokens()  # the next delivery's 401 makes the dispatcher refresh
    [second] = await publish(source, tenant)
    await wait_for_status(tenant, second, "delivered")
    assert token_server.requests[-1]["refresh_token"] == replacement


async def test_expired_refresh_token_fails_with_a_clear_error(tenant, source, token_server):
    path = "/exp-" + uuid.uuid4().hex[:6]
    expired = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    await oauth_configuration(tenant, token_server, path, grant_type="refresh_token",
                              refresh_token=token_server.issue_refresh_token("em-client"),
                              refresh_token_expires_at=expired)
    [event_id] = await publish(source, tenant)
    delivery = await wait_for_status(tenant, event_id, "failed")
    assert "refresh token timed out" in delivery["last_error"]
    assert token_server.requests == []
    assert token_server.resource_calls[f"/resource{path}"] == []


async def test_wrong_client_secret_fails_without_retrying(tenant, source, token_server):
    path = "/bad-" + uuid.uuid4().hex[:6]
    await oauth_configuration(tenant, token_server, path, grant_type="client_credentials")
    token_server.clients["em-client"].client_secret = "changed"
    [event_id] = await publish(source, tenant)
    delivery = await wait_for_status(tenant, event_id, "failed")
    assert "invalid_client" in delivery["last_error"]
