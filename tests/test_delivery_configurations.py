"""Delivery configuration CRUD and validation: URLs, the SSRF guard, modes, secrets."""

from __future__ import annotations

from tests.conftest import realtime_configuration


async def test_bad_configurations_name_the_field(tenant):
    base = {"name": "crm", "mode": "realtime", "endpoints": [{"url": "https://crm.example.com/hooks"}]}
    cases = [
        ({"endpoints": [{"url": "ftp://crm.example.com"}]}, ["endpoints", 0, "url"]),
        ({"endpoints": [{"url": "http://169.254.169.254/latest/meta-data"}]}, ["endpoints", 0, "url"]),
        ({"endpoints": [{"url": "http://10.1.2.3/hook"}]}, ["endpoints", 0, "url"]),
        ({"endpoints": [{"url": "http://user:pw@crm.example.com/"}]}, ["endpoints", 0, "url"]),
        ({"endpoints": []}, ["endpoints"]),
        ({"mode": "sometimes"}, ["mode"]),
        ({"format": "yaml"}, ["format"]),
        ({"throttle": {"max_requests": 0, "per_seconds": 1}}, ["throttle", "max_requests"]),
        ({"schedule": {"simple": "daily"}}, ["schedule"]),
        ({"authentication": {"type": "basic", "username": "u"}}, ["authentication", "basic", "password"]),
        ({"authentication": {"type": "oauth2", "token_url": "http://169.254.169.254/token", "client_id": "c",
                             "client_secret": "s", "grant_type": "client_credentials"}},
         ["authentication", "token_url"]),
        ({"authentication": {"type": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "c",
                             "client_secret": "s", "grant_type": "password"}}, ["authentication", "oauth2"]),
        ({"authentication": {"type": "kerberos"}}, ["authentication"]),
    ]
    for change, loc in cases:
        response = await tenant.client.post("/v1/delivery-configurations", json={**base, **change})
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["loc"] == loc, (change, response.json())


async def test_crud_keeps_secrets_and_endpoint_ids(tenant, receiver):
    configuration = await realtime_configuration(
        tenant, receiver.url("/crud"),
        authentication={"type": "oauth2", "token_url": receiver.url("/token"), "client_id": "cid",
                        "client_secret": "very-secret", "grant_type": "refresh_token",
                        "refresh_token": "rt-secret", "refresh_token_expires_at": "2030-01-01T00:00:00Z"})
    assert configuration["authentication"] == {
        "type": "oauth2", "token_url": receiver.url("/token"), "client_id": "cid",
        "grant_type": "refresh_token", "refresh_token_expires_at": "2030-01-01T00:00:00+00:00",
        "client_secret_set": True, "password_set": False, "refresh_token_set": True}
    endpoint_id = configuration["endpoints"][0]["id"]
    patched = await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}", json={
        "name": "renamed", "endpoints": [{"url": receiver.url("/crud")}, {"url": receiver.url("/crud2")}],
        "throttle": {"max_requests": 10, "per_seconds": 2}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "renamed" and body["throttle"] == {"max_requests": 10, "per_seconds": 2.0}
    assert body["endpoints"][0]["id"] == endpoint_id and len(body["endpoints"]) == 2
    assert body["authentication"]["client_secret_set"] and body["authentication"]["refresh_token_set"]
    assert "very-secret" not in patched.text and "rt-secret" not in patched.text
    removed = await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}", json={"throttle": None})
    assert removed.json()["throttle"] is None
    assert (await tenant.client.delete(f"/v1/delivery-configurations/{configuration['id']}")).status_code == 204
    assert (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).status_code == 404
