"""The console's access pages in a real browser (issue 16): a company's API keys (created and
shown once, revoked), the operator's sources listed from the API with their token actions."""

from __future__ import annotations

import httpx

from tests.test_console import browser, console, expect, pytestmark  # noqa: F401 (fixtures, skip without chromium)


async def test_a_company_creates_and_revokes_an_api_key_in_the_console(console, tenant, urls):  # noqa: F811
    page = console.page
    await console.sign_in(tenant.api_key)
    await console.open("api-keys", "API keys")
    await page.get_by_label("Name").fill("console-reporting")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("fieldset[data-path=scopes] .field-error")).to_contain_text("choose at least one scope")
    await page.get_by_label("read: look only").check()
    await page.get_by_role("button", name="Create key").click()
    key = await console.dialog().locator("output.secret-value").text_content()
    assert key.startswith("emak_")
    await console.dialog().get_by_role("button", name="I have stored it").click()
    row = page.locator("tbody tr", has_text="console-reporting")
    await expect(row).to_contain_text("read")
    async with httpx.AsyncClient(base_url=urls.api, headers={"authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/v1/subscriptions")).status_code == 200
        await row.get_by_role("button", name="Revoke").click()
        await console.dialog().get_by_role("button", name="Revoke").click()
        await expect(row.locator(".badge")).to_have_text("revoked")
        assert (await client.get("/v1/subscriptions")).status_code == 401
    assert console.errors == []


async def test_the_operator_disables_and_rotates_a_source_in_the_console(console, stack, admin):  # noqa: F811
    created = (await admin.post("/v1/admin/sources", json={"name": "console-gw", "topics": ["SCG-Message"]})).json()
    page = console.page
    await console.sign_in(stack.env["EM_ADMIN_TOKEN"])
    await console.open("sources", "Sources")
    row = console.row(id=created["id"])
    await row.get_by_role("button", name="Disable").click()
    await expect(row.locator(".badge")).to_have_text("inactive")
    assert (await admin.get(f"/v1/admin/sources/{created['id']}")).json()["enabled"] is False
    await row.get_by_role("button", name="Rotate token").click()
    await console.dialog().get_by_role("button", name="Rotate token").click()
    token = await console.dialog().locator("output.secret-value").text_content()
    assert token.startswith("ems_") and token != created["token"]
    await console.dialog().get_by_role("button", name="I have stored it").click()
    await expect(row).to_contain_text("previous token until")
    await row.get_by_role("button", name="End overlap").click()
    await console.dialog().get_by_role("button", name="End overlap").click()
    await expect(row).not_to_contain_text("previous token until")
    assert console.errors == [] and page.url.endswith("#/sources")
