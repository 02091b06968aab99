"""The web console (/console) in a real browser: Debian's chromium driven by Playwright, against
the session's real stack. The console is a client of the public API, so each test acts in the
browser and checks the outcome through the API (or the receiving server), waiting for
conditions, never for fixed times."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import urllib.parse
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually, make_tenant, realtime_configuration, subscribe
from tests.delivery_helpers import publish, wait_for_status

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking"]
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test installs it)")


@pytest.fixture(scope="session")
async def browser():
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Console:
    """One browser tab on the console, with what it logged."""

    def __init__(self, page, base: str):
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    async def sign_in(self, credential: str) -> None:
        page = self.page
        await page.goto(f"{self.base}/console/")
        await page.get_by_label("API key or operator token").fill(credential)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    async def open(self, fragment: str, heading: str) -> None:
        await self.page.goto(f"{self.base}/console/#/{fragment}")
        await expect(self.page.get_by_role("heading", level=1, name=heading)).to_be_visible()

    async def shot(self, name: str) -> None:
        """With EM_CONSOLE_SCREENSHOTS=<folder> (docs/screenshots for the README), a picture of the page."""
        folder = os.environ.get("EM_CONSOLE_SCREENSHOTS")
        if folder:
            await self.page.screenshot(path=str(Path(folder) / f"{name}.png"))

    def dialog(self):
        return self.page.get_by_role("dialog")

    async def gear(self, row, label: str, item: str) -> None:
        await row.get_by_role("button", name=label).click()
        await row.get_by_role("menuitem", name=item).click()

    def row(self, **data):
        [(key, value)] = data.items()
        return self.page.locator(f'tr[data-{key}="{value}"]')


@pytest.fixture
async def console(browser, urls):
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    yield Console(page, urls.api)
    await context.close()


async def download_text(download) -> str:
    path = await download.path()
    return await asyncio.to_thread(Path(path).read_text)


def sent_sign_in(requests):
    """The one request that carried the key: the sign-in form's POST."""
    [sign_in] = [r for r in requests if r.method == "POST" and r.url.endswith("/v1/console/session")]
    return sign_in


async def publish_until_matched(source, tenant, **fields) -> str:
    """Publish until an event is matched: a subscription made a moment ago reaches the matcher
    within seconds, and an event stored with deliveries proves it has."""
    async def probe():
        [event_id] = await publish(source, tenant, **fields)

        async def stored():
            response = await tenant.client.get(f"/v1/events/{event_id}")
            return response.json() if response.status_code == 200 else None

        event = await eventually(stored)
        return event_id if event["deliveries"] else None

    return await eventually(probe, timeout=30)


async def test_walkthrough_oauth_delivery_viewer_tracking_republish_handled_dashboard(
        console, tenant, source, token_server):
    """The issue's walk: a new company signs in, creates a configuration with OAuth 2.0, subscribes,
    sees the event delivered, opens its tracking, republishes it, marks it handled, sees the dashboard."""
    page = console.page
    await page.goto(f"{console.base}/console/")
    await expect(page.get_by_label("API key or operator token")).to_be_visible()
    await console.shot("01-sign-in")
    sent = []
    page.on("request", lambda request: sent.append(request))
    await console.sign_in(tenant.api_key)
    assert tenant.api_key not in page.url
    # The key was posted once; the browser keeps only an HttpOnly session cookie, invisible to scripts.
    storage = await page.evaluate("JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert tenant.api_key not in storage
    assert not await page.evaluate("document.cookie")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "em_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["value"] != tenant.api_key

    # A delivery configuration, then its OAuth 2.0 authentication from the gear menu.
    await console.open("configurations", "Delivery configurations")
    await expect(page.get_by_text("No delivery configurations yet")).to_be_visible()
    await page.get_by_role("button", name="New delivery configuration").click()
    dialog = console.dialog()
    await dialog.get_by_label("Name").fill("crm-oauth")
    await dialog.get_by_label("Endpoint 1 URL").fill(token_server.resource_url("/walk"))
    await dialog.get_by_label("Active (deliver events now)").check()
    await dialog.get_by_role("button", name="Create").click()
    await expect(dialog).to_be_hidden()
    row = console.row(name="crm-oauth")
    await expect(row).to_contain_text("realtime")
    await console.gear(row, "Actions for crm-oauth", "Authentication")
    dialog = console.dialog()
    await dialog.get_by_label("OAuth 2.0").check()
    await expect(dialog.get_by_label("Grant type")).to_have_value("client_credentials")
    await dialog.get_by_label("Access token URL").fill(token_server.token_url)
    await dialog.get_by_label("Client ID").fill("em-client")
    await dialog.get_by_label("Client secret").fill("em-client-secret")
    await dialog.get_by_label("Scope (optional)").fill("Reporting")
    await console.shot("03-authentication-modal")
    await dialog.get_by_role("button", name="Save authentication").click()
    await expect(dialog).to_be_hidden()
    await expect(row).to_contain_text("OAuth 2.0 (client credentials)")
    await console.shot("02-delivery-configurations")
    [configuration] = (await tenant.client.get("/v1/delivery-configurations")).json()
    assert configuration["authentication"] == {"type": "oauth2", "token_url": token_server.token_url,
                                               "client_id": "em-client", "scope": "Reporting",
                                               "grant_type": "client_credentials", "client_secret_set": True,
                                               "password_set": False, "refresh_token_set": False}

    # Subscribe with criteria through the New Subscription modal.
    await console.open("subscriptions", "Subscriptions")
    await page.get_by_role("button", name="New Subscription").click()
    dialog = console.dialog()
    await dialog.get_by_label("Topic").select_option("SCG-Message")
    await expect(dialog.locator(".topic-info")).to_contain_text("SMS and Voice Service")
    await dialog.get_by_label("message.delivered").check()
    criteria = dialog.get_by_label("Matching criteria (optional, JSON event pattern)")
    await criteria.fill('{"data": {"campaign": ["spring"]}}')
    await console.shot("04-new-subscription-modal")
    await dialog.get_by_role("button", name="Create subscription").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("tbody tr")).to_contain_text("message.delivered")
    await console.shot("05-subscriptions")

    # An event through the real ingest service, delivered with the token the console configured.
    event_id = await publish_until_matched(source, tenant, event_type="message.delivered",
                                           data={"campaign": "spring", "to": "+14155550100"})
    await wait_for_status(tenant, event_id, "delivered")
    assert token_server.resource_calls["/resource/walk"]

    await console.open("events", "Event viewer")
    event_row = console.row(id=event_id)
    await expect(event_row.locator(".badge")).to_have_text("delivered")
    await console.gear(event_row, f"Actions for event {event_id}", "View")
    await expect(console.dialog().locator("pre.payload")).to_contain_text('"campaign": "spring"')
    await expect(console.dialog()).to_contain_text("crm-oauth")
    await console.shot("07-event-view")
    await console.dialog().get_by_role("button", name="Close").click()

    await console.gear(event_row, f"Actions for event {event_id}", "Tracking")
    attempts = console.dialog().locator("tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first).to_contain_text("200")
    await expect(attempts.first).to_contain_text(token_server.resource_url("/walk"))
    await console.dialog().get_by_role("button", name="Close").click()

    await console.gear(event_row, f"Actions for event {event_id}", "Republish")
    await expect(page.locator("#toast")).to_contain_text("1 delivery queued again")

    async def two_attempts():
        return len((await tenant.client.get(f"/v1/events/{event_id}/attempts")).json()) == 2

    await eventually(two_attempts)
    await console.gear(event_row, f"Actions for event {event_id}", "Tracking")
    await expect(console.dialog().locator("tbody tr")).to_have_count(2)
    await console.shot("08-event-tracking")
    await console.dialog().get_by_role("button", name="Close").click()

    await console.gear(event_row, f"Actions for event {event_id}", "Mark as handled")
    await console.dialog().get_by_role("button", name="Mark as handled").click()
    await expect(event_row.locator(".badge")).to_have_text("handled")
    await console.shot("06-event-viewer")
    assert (await tenant.client.get(f"/v1/events/{event_id}")).json()["status"] == "handled"

    await console.open("dashboard", "Event delivery dashboard")
    dashboard_row = console.row(id=configuration["id"])
    await expect(page.locator('[data-total="handled"]')).to_have_text("handled: 1")
    await expect(dashboard_row.get_by_role("link", name="1 handled in crm-oauth")).to_be_visible()
    await expect(dashboard_row).to_contain_text("healthy")
    await expect(page.locator(".chart rect.bar-delivered")).to_have_count(1)
    await console.shot("10-dashboard")
    assert console.errors == []

    # No request after sign-in carried the key; every change carried the session's CSRF token.
    posts = [r for r in sent if r.url.startswith(f"{console.base}/v1/") and r.method != "GET"]
    assert [r for r in sent if tenant.api_key in (r.post_data or "")] == [sent_sign_in(sent)]
    assert all("authorization" not in r.headers for r in sent)
    assert posts and all(r.headers.get("x-csrf-token") for r in posts if not r.url.endswith("/v1/console/session"))

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key or operator token")).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == "em_console"]
    # Ended on the server: the cookie's value, replayed, opens nothing.
    async with httpx.AsyncClient(base_url=console.base) as client:
        replayed = await client.get("/v1/subscriptions", headers={"cookie": f"em_console={cookie['value']}"})
        assert replayed.status_code == 401


async def test_configuration_form_errors_edit_authentication_activation_and_delete(console, tenant):
    page = console.page
    await console.sign_in(tenant.api_key)
    await console.open("configurations", "Delivery configurations")
    await page.get_by_role("button", name="New delivery configuration").click()
    dialog = console.dialog()
    await dialog.get_by_label("Name").fill("crm")
    await dialog.get_by_label("Endpoint 1 URL").fill("http://169.254.169.254/latest")
    await dialog.get_by_role("button", name="Create").click()
    # The API's 422 at endpoints.0.url, next to that field.
    url_field = dialog.locator(".endpoint-row", has=page.get_by_label("Endpoint 1 URL"))
    await expect(dialog.locator("fieldset[data-path=endpoints] .field-error")).to_be_visible()
    await expect(dialog.get_by_label("Endpoint 1 URL")).to_have_attribute("aria-invalid", "true")
    assert await url_field.count() == 1
    await dialog.get_by_label("Endpoint 1 URL").fill("http://127.0.0.1:9/hook")
    await dialog.get_by_role("button", name="Add endpoint").click()
    await dialog.get_by_label("Endpoint 2 URL").fill("http://127.0.0.1:9/second")
    await dialog.get_by_label("At most (requests)").fill("20")
    await dialog.get_by_label("per (seconds)").fill("1")
    await dialog.get_by_role("button", name="Create").click()
    await expect(dialog).to_be_hidden()
    row = console.row(name="crm")
    await expect(row).to_contain_text("20 per 1 s")
    await expect(row).to_contain_text("inactive")

    # Edit: rename, XML, no throttle.
    await console.gear(row, "Actions for crm", "Edit")
    dialog = console.dialog()
    await expect(dialog.get_by_label("Mode")).to_be_disabled()
    await dialog.get_by_label("Name").fill("crm-xml")
    await dialog.get_by_label("Format").select_option("xml")
    await dialog.get_by_label("At most (requests)").fill("")
    await dialog.get_by_label("per (seconds)").fill("")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    row = console.row(name="crm-xml")
    await expect(row).to_contain_text("XML")
    [stored] = (await tenant.client.get("/v1/delivery-configurations")).json()
    assert stored["throttle"] is None and stored["format"] == "xml" and len(stored["endpoints"]) == 2

    # Authentication: the API's error at authentication.token_url, then OAuth with a refresh token that times out.
    await console.gear(row, "Actions for crm-xml", "Authentication")
    dialog = console.dialog()
    await dialog.get_by_label("OAuth 2.0").check()
    await dialog.get_by_label("Grant type").select_option("refresh_token")
    await expect(dialog.get_by_label("Refresh token", exact=True)).to_be_visible()
    await expect(dialog.locator("input[name=oauth_username]")).to_be_hidden()
    await dialog.get_by_label("Access token URL").fill("http://169.254.169.254/token")
    await dialog.get_by_label("Client ID").fill("em-client")
    await dialog.get_by_label("Client secret").fill("s3cret")
    await dialog.get_by_label("Refresh token", exact=True).fill("rt-1")
    await dialog.get_by_label("Refresh token times out at (optional)").fill("2031-05-01T12:30")
    await dialog.get_by_role("button", name="Save authentication").click()
    token_url = dialog.get_by_label("Access token URL")
    await expect(token_url).to_have_attribute("aria-invalid", "true")
    await expect(token_url.locator("xpath=..").locator(".field-error")).to_be_visible()
    await token_url.fill("http://127.0.0.1:9/token")
    await dialog.get_by_role("button", name="Save authentication").click()
    await expect(dialog).to_be_hidden()
    await expect(row).to_contain_text("OAuth 2.0 (refresh token)")
    [stored] = (await tenant.client.get("/v1/delivery-configurations")).json()
    authentication = stored["authentication"]
    assert authentication["grant_type"] == "refresh_token" and authentication["refresh_token_set"] is True
    assert authentication["refresh_token_expires_at"].startswith("2031-05-01")
    assert "rt-1" not in json.dumps(stored) and "s3cret" not in json.dumps(stored)
    # Reopened, it shows what is stored and never a secret.
    await console.gear(row, "Actions for crm-xml", "Authentication")
    dialog = console.dialog()
    await expect(dialog.get_by_label("Client ID")).to_have_value("em-client")
    await expect(dialog.get_by_label("Client secret")).to_have_value("")
    await dialog.get_by_role("button", name="Close").click()

    # Activate, deactivate.
    await console.gear(row, "Actions for crm-xml", "Activate")
    await expect(row.locator(".badge").first).to_have_text("active")
    # Pause holds, resume releases (what the toast says comes from the API's answer).
    await console.gear(row, "Actions for crm-xml", "Pause")
    await expect(row.locator(".badge").first).to_have_text("paused")
    assert (await tenant.client.get("/v1/delivery-configurations")).json()[0]["paused"] is True
    await console.gear(row, "Actions for crm-xml", "Resume")
    await expect(page.get_by_text("crm-xml resumed: 0 held deliveries released.")).to_be_visible()
    await expect(row.locator(".badge").first).to_have_text("active")
    await console.gear(row, "Actions for crm-xml", "Deactivate")
    await expect(row.locator(".badge").first).to_have_text("inactive")

    # Delete asks first: cancelled, nothing happens; confirmed, it is gone.
    await console.gear(row, "Actions for crm-xml", "Delete")
    await expect(console.dialog()).to_contain_text('Delete the delivery configuration "crm-xml"')
    await console.dialog().get_by_role("button", name="Cancel").click()
    await expect(row).to_be_visible()
    await console.gear(row, "Actions for crm-xml", "Delete")
    await console.dialog().get_by_role("button", name="Delete").click()
    await expect(page.get_by_text("No delivery configurations yet")).to_be_visible()
    assert (await tenant.client.get("/v1/delivery-configurations")).json() == []


async def test_subscription_modal_topic_info_required_types_and_criteria_error_at_its_path(console, tenant):
    page = console.page
    configuration = await realtime_configuration(tenant, "http://127.0.0.1:9/hook", active=False)
    await console.sign_in(tenant.api_key)
    await console.open("subscriptions", "Subscriptions")
    await page.get_by_role("button", name="New Subscription").click()
    dialog = console.dialog()
    await dialog.get_by_label("Topic").select_option("NIS-Events")
    await expect(dialog.locator(".topic-info")).to_contain_text("Phone Number Verification")
    await expect(dialog.locator(".topic-info")).to_contain_text("number.ported")
    await expect(dialog.get_by_label("Delivery configuration")).to_have_value(configuration["id"])
    await dialog.get_by_role("button", name="Create subscription").click()
    # NIS-Events requires an event type: the API's 422 at event_types, shown on that fieldset.
    event_types_error = dialog.locator("fieldset[data-path=event_types] .field-error")
    await expect(event_types_error).to_contain_text("requires at least one")
    await dialog.get_by_label("number.ported").check()
    criteria = dialog.get_by_label("Matching criteria (optional, JSON event pattern)")
    await criteria.fill('{"data": {"carrier": ["x"')
    await dialog.get_by_role("button", name="Create subscription").click()
    await expect(criteria.locator("xpath=..").locator(".field-error")).to_contain_text("not valid JSON")
    await criteria.fill('{"data": {"carrier": [{"wildcard": "a**b"}]}}')
    await dialog.get_by_role("button", name="Create subscription").click()
    error = criteria.locator("xpath=..").locator(".field-error")
    await expect(error).to_contain_text("matching_criteria.data.carrier")
    await console.shot("11-criteria-error")
    await expect(criteria).to_have_attribute("aria-invalid", "true")
    await expect(dialog.locator("fieldset[data-path=event_types] .field-error")).to_have_count(0)
    await criteria.fill('{"data": {"carrier": [{"prefix": "Voda"}]}}')
    await dialog.get_by_label("End (optional)").fill("2035-01-01T00:00")
    await dialog.get_by_role("button", name="Create subscription").click()
    await expect(dialog).to_be_hidden()
    [subscription] = (await tenant.client.get("/v1/subscriptions")).json()
    assert subscription["topic"] == "NIS-Events" and subscription["event_types"] == ["number.ported"]
    assert subscription["matching_criteria"] == {"data": {"carrier": [{"prefix": "Voda"}]}}
    assert subscription["end_at"].startswith("2035-01-01") or subscription["end_at"].startswith("2034-12-31")
    row = console.row(id=subscription["id"])
    await expect(row).to_contain_text("number.ported")
    await console.gear(row, "Actions for subscription to NIS-Events", "Deactivate")
    await expect(row.locator(".badge")).to_have_text("inactive")
    await console.gear(row, "Actions for subscription to NIS-Events", "Delete")
    await console.dialog().get_by_role("button", name="Delete").click()
    await expect(page.get_by_text("No subscriptions yet")).to_be_visible()


async def test_monitored_numbers_csv_upload_in_chunks_count_find_and_remove(console, tenant):
    page = console.page
    numbers = [f"+1415{n:07d}" for n in range(25_000)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "label"])
    for index, number in enumerate(numbers):
        writer.writerow([number, f"customer {index}"])
    posts = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST"
            and request.url.endswith("/v1/monitored-numbers") else None)
    await console.sign_in(tenant.api_key)
    await console.open("numbers", "Monitored numbers")
    await expect(page.get_by_text("No monitored numbers yet")).to_be_visible()
    await page.get_by_label("…or upload a CSV file").set_input_files(
        {"name": "numbers.csv", "mimeType": "text/csv", "buffer": buffer.getvalue().encode()})
    await page.get_by_role("button", name="Add numbers").click()
    await expect(page.locator(".upload-status")).to_contain_text("Done: 3 of 3 chunks, 25,000 added, 0 already present")
    assert len(posts) == 3
    await expect(page.locator("progress[aria-label='Upload progress']")).to_have_js_property("value", 25_000)
    await expect(page.locator(".count")).to_contain_text("More than 100")
    await page.get_by_role("button", name="Count all").click()
    await expect(page.locator(".count")).to_have_text("25,000 numbers monitored.")
    await console.shot("12-monitored-numbers")
    # Pasting: one new, one already present.
    await page.get_by_label("Paste numbers (one per line, or comma-separated)").fill("+14150000001\n+4915123456789")
    await page.get_by_role("button", name="Add numbers").click()
    await expect(page.locator(".upload-status")).to_contain_text("1 added, 1 already present")
    # Not E.164: refused before anything is sent, at the field.
    await page.get_by_label("Paste numbers (one per line, or comma-separated)").fill("+14150000001\n0049151")
    await page.get_by_role("button", name="Add numbers").click()
    await expect(page.locator(".field-error")).to_contain_text("not E.164")
    await page.get_by_label("Find numbers containing").fill("+49151")
    await page.get_by_role("button", name="Find").click()
    await expect(page.locator("ul.found li")).to_have_text(["+4915123456789"])
    await page.get_by_label("Paste numbers (one per line, or comma-separated)").fill("+4915123456789")
    await page.get_by_role("button", name="Remove numbers").click()
    await console.dialog().get_by_role("button", name="Remove").click()
    await expect(page.locator(".upload-status")).to_contain_text("1 removed")
    listed = (await tenant.client.get("/v1/monitored-numbers", params={"limit": 10_000})).json()
    assert "+4915123456789" not in listed["data"] and listed["next_cursor"]


async def test_search_filters_and_keyset_pagination_and_bulk_handled(console, tenant, source):
    page = console.page
    subject = f"+1650{uuid.uuid4().int % 10_000_000:07d}"
    ids = await publish(source, tenant, count=7, subject=subject, data={"n": 1})
    other = await publish(source, tenant, count=1, data={"n": 2})

    async def stored():
        found = (await tenant.client.get("/v1/events", params={"limit": 100})).json()["data"]
        return len(found) == 8

    await eventually(stored)
    await console.sign_in(tenant.api_key)
    await console.open("search", "Event search")
    await page.get_by_label("Subject").fill(subject)
    await page.get_by_label("Per page").select_option("5")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator(".results tbody tr")
    await expect(rows).to_have_count(5)
    first_page = await rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    await page.get_by_role("button", name="Next →").click()
    await expect(rows).to_have_count(2)
    second_page = await rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert sorted(first_page + second_page) == sorted(ids) and other[0] not in first_page + second_page
    await expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    await console.shot("09-event-search")
    await page.get_by_role("button", name="← Previous").click()
    await expect(rows).to_have_count(5)
    # A time range that excludes everything, then an id.
    await page.get_by_label("Received until").fill("2001-01-01T00:00")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("No events match these filters")).to_be_visible()
    await page.get_by_label("Received until").fill("")
    await page.get_by_label("Subject").fill("")
    await page.get_by_label("Event id").fill(other[0])
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".badge")).to_have_text("unmatched")
    # Bulk: mark handled everything the search selects (nothing delivered: the job completes with 0).
    await page.get_by_role("button", name="Mark all matching as handled…").click()
    await console.dialog().get_by_role("button", name="Mark all handled").click()
    await expect(page.locator(".bulk-status")).to_contain_text("completed")


async def test_event_payload_is_rendered_as_text(console, tenant, source):
    page = console.page
    hostile = {"text": "<script>window.__pwned = 1</script>", "html": '<img src=x onerror="window.__pwned = 2">',
               "nested": {"b": "<b>bold</b>"}}
    [event_id] = await publish(source, tenant, data=hostile, subject="<img src=y onerror=window.__pwned=3>")

    async def stored():
        return (await tenant.client.get(f"/v1/events/{event_id}")).status_code == 200

    await eventually(stored)
    await console.sign_in(tenant.api_key)
    await console.open("events", "Event viewer")
    row = console.row(id=event_id)
    await expect(row).to_contain_text("<img src=y onerror=window.__pwned=3>")
    await console.gear(row, f"Actions for event {event_id}", "View")
    payload = console.dialog().locator("pre.payload")
    await expect(payload).to_contain_text("<script>window.__pwned = 1</script>")
    await expect(payload).to_contain_text('<img src=x onerror=\\"window.__pwned = 2\\">')
    assert await page.locator("main img, dialog img, main script, dialog script, dialog b").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert console.errors == []


async def test_buffer_files_list_and_download(console, tenant, source, stack):
    from services.scheduler.windows import SCHEDULED_CONFIGURATIONS, WindowRunner
    from shared.db import create_pool
    from shared.kafka import Topics, make_producer
    from shared.media import MediaStore
    from shared.settings import Settings

    page = console.page
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "nightly-files", "mode": "scheduled", "active": True, "schedule": {"simple": "hourly"}})
    configuration = response.json()
    await subscribe(tenant, configuration["id"])
    event_id = await publish_until_matched(source, tenant, data={"file": "one"})
    await wait_for_status(tenant, event_id, "buffered")
    created = datetime.fromisoformat(configuration["created_at"])
    fire = created.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    settings = Settings(**{k[3:].lower(): v for k, v in stack.env.items()
                           if k.startswith("EM_") and k[3:].lower() in Settings.model_fields})
    pool = await create_pool(settings.database_url, size=2)
    producer = make_producer(settings)
    await producer.start()
    try:
        runner = WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)
        # Only this test's configuration: the others in the session's database are other tests' business.
        [mine] = [c for c in await pool.fetch(SCHEDULED_CONFIGURATIONS) if c["id"] == configuration["id"]]
        await runner.run_configuration(mine, fire + timedelta(minutes=1))
    finally:
        await producer.stop()
        await pool.close()
    [listed] = (await tenant.client.get("/v1/buffer-files")).json()["data"]
    assert listed["status"] == "stored"

    await console.sign_in(tenant.api_key)
    await console.open("buffer-files", "Event buffer files")
    row = console.row(id=listed["id"])
    await expect(row).to_contain_text("nightly-files")
    await expect(row).to_contain_text("stored")
    await expect(row.locator("td.num").first).to_have_text(re.compile(r"^\d+$"))
    await console.shot("13-buffer-files")
    async with page.expect_download() as download_info:
        await row.get_by_role("button", name=re.compile("^Download")).click()
    download = await download_info.value
    document = json.loads(await download_text(download))
    assert document["delivery_configuration_id"] == configuration["id"]
    assert event_id in [e["id"] for e in document["events"]]
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_text("No buffer files for this selection yet")).to_be_visible()


async def test_operator_pages_companies_applications_sources(console, stack, admin, urls):
    page = console.page
    await console.sign_in(stack.env["EM_ADMIN_TOKEN"])
    await expect(page.get_by_role("heading", level=1, name="Companies")).to_be_visible()
    name = f"Console Co {uuid.uuid4().hex[:6]}"
    await page.get_by_label("Name").fill(name)
    await page.get_by_role("button", name="Create company").click()
    row = console.row(name=name)
    await expect(row).to_be_visible()
    await console.gear(row, f"Actions for {name}", "New application")
    await console.dialog().get_by_role("button", name="Create application").click()
    api_key = await console.dialog().locator("output.secret-value").text_content()
    assert api_key.startswith("emk_")
    await console.dialog().get_by_role("button", name="I have stored it").click()
    company_id = await row.get_attribute("data-id")
    await console.shot("14-operator-companies")
    tenant_client_headers = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=urls.api, headers=tenant_client_headers) as company:
        assert (await company.get("/v1/subscriptions")).status_code == 200

        await console.open("applications", "Applications")
        app_row = page.locator("tbody tr", has_text=name)
        await expect(app_row).to_contain_text("active")
        await app_row.get_by_role("button", name="Disable").click()
        await expect(app_row.locator(".badge")).to_have_text("inactive")
        assert (await company.get("/v1/subscriptions")).status_code == 403
        await app_row.get_by_role("button", name="Enable").click()
        await expect(app_row.locator(".badge")).to_have_text("active")
        await console.shot("15-operator-applications")
        await app_row.get_by_role("button", name="Rotate key").click()
        await console.dialog().get_by_role("button", name="Rotate key").click()
        new_key = await console.dialog().locator("output.secret-value").text_content()
        assert new_key.startswith("emk_") and new_key != api_key
        assert (await company.get("/v1/subscriptions")).status_code == 401
    companies = (await admin.get("/v1/admin/companies")).json()
    assert any(c["id"] == company_id and c["name"] == name for c in companies)

    await console.open("sources", "Sources")
    await page.get_by_label("Name").fill("console-sms")
    await page.get_by_role("button", name="Create source").click()
    await expect(page.locator("fieldset[data-path=topics] .field-error")).to_contain_text("grant at least one topic")
    await page.get_by_label("SCG-Message").check()
    await page.get_by_label("Other catalog topics").fill("SCG-Keyword, No-Such-Topic")
    await page.get_by_role("button", name="Create source").click()
    await expect(page.locator(".field-error")).to_contain_text("unknown topic 'No-Such-Topic'")
    await page.get_by_label("Other catalog topics").fill("SCG-Keyword")
    await page.get_by_role("button", name="Create source").click()
    token = await console.dialog().locator("output.secret-value").text_content()
    assert token.startswith("ems_")
    await console.dialog().get_by_role("button", name="I have stored it").click()
    await expect(page.locator("tbody tr", has_text="console-sms")).to_contain_text("SCG-Message, SCG-Keyword")
    await console.shot("16-operator-sources")

    await console.open("dead-letters", "Dead letters")
    await expect(page.locator(".empty, tbody tr").first).to_be_visible()


async def test_every_page_renders_without_console_errors_with_a_strict_policy(console, admin, urls, stack):
    tenant = await make_tenant(admin, urls)
    try:
        await realtime_configuration(tenant, "http://127.0.0.1:9/hook", active=False)
        response = await console.page.request.get(f"{urls.api}/console/")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        redirect = await console.page.request.get(f"{urls.api}/console", max_redirects=0)
        assert redirect.status == 307 and redirect.headers["location"] == "/console/"
        await console.sign_in(tenant.api_key)
        for fragment, heading in (("dashboard", "Event delivery dashboard"),
                                  ("configurations", "Delivery configurations"),
                                  ("subscriptions", "Subscriptions"), ("events", "Event viewer"),
                                  ("search", "Event search"), ("buffer-files", "Event buffer files"),
                                  ("numbers", "Monitored numbers"), ("api-keys", "API keys"),
                                  ("topics", "Topic info")):
            await console.open(fragment, heading)
            await expect(console.page.locator(".loading")).to_have_count(0)
        await expect(console.page.get_by_role("cell", name="NIS-Events", exact=True)).to_be_visible()
        await console.page.get_by_role("button", name="Sign out").click()
        await console.sign_in(stack.env["EM_ADMIN_TOKEN"])
        for fragment, heading in (("companies", "Companies"), ("applications", "Applications"),
                                  ("sources", "Sources"), ("dead-letters", "Dead letters")):
            await console.open(fragment, heading)
        assert console.errors == []
        # A wrong credential is refused next to the field (the 401 is the one expected console error).
        await console.page.get_by_role("button", name="Sign out").click()
        await console.page.get_by_label("API key or operator token").fill("emk_not-a-key")
        await console.page.get_by_role("button", name="Sign in").click()
        await expect(console.page.locator(".field-error")).to_contain_text("this API key is not accepted")
    finally:
        await tenant.client.aclose()


def test_console_files_are_packaged():
    static = Path(__file__).parents[1] / "services" / "api" / "console" / "static"
    assert (static / "index.html").exists()
    html = (static / "index.html").read_text()
    assert "<script type=\"module\" src=\"app.js\"></script>" in html and "<script>" not in html
    for script in static.rglob("*.js"):
        text = script.read_text()
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, script


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


async def test_no_serious_or_critical_accessibility_violations(browser, tenant, source, stack, urls):
    """axe-core (vendored from npm) on every page and on the main modals."""
    configuration = await realtime_configuration(tenant, "http://127.0.0.1:9/hook", active=False)
    await subscribe(tenant, configuration["id"])
    await publish(source, tenant, data={"a": 1})
    # axe is injected as a script; the console's policy rightly refuses that, so this context bypasses it.
    context = await browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        console = Console(await context.new_page(), urls.api)
        page = console.page
        found = {}

        async def audit(name: str) -> None:
            if not await page.evaluate("typeof window.axe === 'object'"):
                await page.add_script_tag(path=str(AXE))
            result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            assert result["testEngine"]["name"] == "axe-core" and result["passes"], name
            bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
                   for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if bad:
                found[name] = bad

        await page.goto(f"{urls.api}/console/")
        await expect(page.get_by_label("API key or operator token")).to_be_visible()
        await audit("sign-in")
        await console.sign_in(tenant.api_key)
        for fragment, heading in (("dashboard", "Event delivery dashboard"),
                                  ("configurations", "Delivery configurations"),
                                  ("subscriptions", "Subscriptions"), ("events", "Event viewer"),
                                  ("search", "Event search"), ("buffer-files", "Event buffer files"),
                                  ("numbers", "Monitored numbers"), ("topics", "Topic info"),
                                  ("api-keys", "API keys")):
            await console.open(fragment, heading)
            await expect(page.locator(".loading")).to_have_count(0)
            await audit(fragment)
        await console.open("configurations", "Delivery configurations")
        await page.get_by_role("button", name="New delivery configuration").click()
        await audit("new configuration modal")
        await console.dialog().get_by_role("button", name="Close").click()
        row = console.row(id=configuration["id"])
        await console.gear(row, "Actions for crm-realtime", "Authentication")
        await console.dialog().get_by_label("OAuth 2.0").check()
        await audit("authentication modal")
        await console.dialog().get_by_role("button", name="Close").click()
        await console.open("subscriptions", "Subscriptions")
        await page.get_by_role("button", name="New Subscription").click()
        await console.dialog().get_by_label("Topic").select_option("NIS-Events")
        await audit("new subscription modal")
        await page.get_by_role("button", name="Close").click()
        await page.get_by_role("button", name="Sign out").click()
        await console.sign_in(stack.env["EM_ADMIN_TOKEN"])
        for fragment, heading in (("companies", "Companies"), ("applications", "Applications"),
                                  ("sources", "Sources"), ("dead-letters", "Dead letters")):
            await console.open(fragment, heading)
            await audit(fragment)
        assert found == {}
    finally:
        await context.close()


async def test_signed_in_console_survives_a_reload_and_ends_when_the_key_is_disabled(console, tenant, admin):
    page = console.page
    await console.sign_in(tenant.api_key)
    await console.open("subscriptions", "Subscriptions")
    await page.reload()  # the cookie, not the tab's storage, holds the session
    await expect(page.get_by_role("heading", level=1, name="Subscriptions")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await admin.patch(f"/v1/admin/applications/{tenant.application_id}", json={"event_manager_enabled": False})
    await console.open("configurations", "Sign in to Event Manager")
    await expect(page.locator(".notice")).to_contain_text("Your session has ended")


async def test_console_link_from_a_provider_portal_signs_in_once(browser, admin, tenant, urls):
    """A provider's portal (another site) sends its user to a console link: the company is signed in
    and lands on the console; the same link opened again leads to the sign-in page."""
    link = (await admin.post(f"/v1/admin/companies/{tenant.id}/console-sessions")).json()["url"]
    portal = "https://portal.example.test/"
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        # The portal is served by the test itself: nothing leaves the machine.
        await context.route(f"{portal}**", lambda route: route.fulfill(
            content_type="text/html", body=f'<!doctype html><title>Portal</title><a href="{link}">Event Manager</a>'))
        console = Console(await context.new_page(), urls.api)
        page = console.page
        await page.goto(portal)
        await page.get_by_role("link", name="Event Manager").click()
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        assert page.url.startswith(f"{urls.api}/console/") and "token" not in page.url
        await expect(page.get_by_role("heading", level=1, name="Event delivery dashboard")).to_be_visible()
        await console.open("configurations", "Delivery configurations")
        await page.get_by_role("button", name="New delivery configuration").click()
        await console.dialog().get_by_label("Name").fill("from-portal")
        await console.dialog().get_by_label("Endpoint 1 URL").fill("http://127.0.0.1:9/hook")
        await console.dialog().get_by_role("button", name="Create").click()
        await expect(console.row(name="from-portal")).to_be_visible()
        assert [c["name"] for c in (await tenant.client.get("/v1/delivery-configurations")).json()] == ["from-portal"]
        assert console.errors == []
        await context.clear_cookies()
        await page.goto(portal)
        await page.get_by_role("link", name="Event Manager").click()
        await expect(page.locator(".notice")).to_contain_text("already used or has expired")
        await expect(page.get_by_label("API key or operator token")).to_be_visible()
        assert "link=" not in page.url
    finally:
        await context.close()


@pytest.mark.parametrize("service", ["api", "ingest"])
async def test_docs_render_with_nothing_from_outside(browser, urls, service):
    """/docs (Swagger UI) loads its script, style and icon from the service itself: on a machine
    without internet access it renders the operations."""
    base = urls.api if service == "api" else urls.ingest
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    outside = []

    async def only_this_machine(route):
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    try:
        await context.route("**/*", only_this_machine)
        page = await context.new_page()
        await page.goto(f"{base}/docs")
        operations = page.locator(".opblock")
        await expect(operations.first).to_be_visible()
        assert await operations.count() > 3
        await expect(page.locator(".opblock-summary-path", has_text="/healthz").first).to_be_visible()
        assert outside == []
    finally:
        await context.close()


async def test_authentication_by_api_key_and_mutual_tls(console, tenant, receiver):
    from tests.conftest import unique_path
    from tests.pki import Pki

    configuration = await realtime_configuration(tenant, receiver.url(unique_path("console-auth")), name="crm-keyed")
    await console.sign_in(tenant.api_key)
    await console.open("configurations", "Delivery configurations")
    row = console.row(name="crm-keyed")
    await console.gear(row, "Actions for crm-keyed", "Authentication")
    dialog = console.dialog()
    await dialog.get_by_label("API key").check()
    await expect(dialog.get_by_label("Header name")).to_have_value("X-API-Key")
    await dialog.get_by_label("Header name").fill("X-Token")
    await dialog.get_by_label("Key", exact=True).fill("console-key-1")
    await dialog.get_by_role("button", name="Save authentication").click()
    await expect(dialog).to_be_hidden()
    await expect(row).to_contain_text("API key (X-Token)")
    stored = (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).json()
    assert stored["authentication"] == {"type": "api_key", "header_name": "X-Token", "api_key_set": True}

    # Mutual TLS: an expired certificate is the API's 422 next to the certificate field.
    pki = Pki()
    await console.gear(row, "Actions for crm-keyed", "Authentication")
    dialog = console.dialog()
    await dialog.get_by_label("Mutual TLS").check()
    certificate = dialog.get_by_label("Client certificate (PEM)")
    expired = pki.client(expired=True)
    await certificate.fill(expired["certificate"])
    await dialog.get_by_label("Private key (PEM, unencrypted)").fill(expired["private_key"])
    await dialog.get_by_role("button", name="Save authentication").click()
    await expect(certificate).to_have_attribute("aria-invalid", "true")
    valid = pki.client()
    await certificate.fill(valid["certificate"])
    await dialog.get_by_label("Private key (PEM, unencrypted)").fill(valid["private_key"])
    await dialog.get_by_label("CA bundle (PEM, optional)").fill(pki.ca_pem)
    await dialog.get_by_role("button", name="Save authentication").click()
    await expect(dialog).to_be_hidden()
    await expect(row).to_contain_text("Mutual TLS")
    stored = (await tenant.client.get(f"/v1/delivery-configurations/{configuration['id']}")).json()
    assert stored["authentication"]["certificate_set"] is True and "PRIVATE" not in json.dumps(stored)
    assert [e for e in console.errors if "422" not in e] == []  # the browser logs the expected 422
