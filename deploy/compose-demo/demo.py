"""The one-shot demo of docker-compose.yml: shows an event delivered end to end. It creates a
company with an application (API key), a realtime delivery configuration pointing at the demo
receiver, a subscription to SCG-Message and a source; publishes one event through ingest; then
waits until the api reports the delivery `delivered` and the receiver lists the event.
Exits 0 on success, 1 (saying what it last saw) otherwise. Standard library only.

    DEMO_API_URL, DEMO_INGEST_URL   where the api and ingest answer (from this container)
    DEMO_ADMIN_TOKEN                the operator token (EM_ADMIN_TOKEN)
    DEMO_ENDPOINT_URL               the receiver as the dispatcher reaches it
    DEMO_RECEIVER_URL               the receiver as this script reaches it (its GET /received)
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

TIMEOUT = float(os.environ.get("DEMO_TIMEOUT_SECONDS", "120"))


def call(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, json.loads(text) if text else None


def created(method: str, url: str, token: str, body: dict) -> dict:
    status, answer = call(method, url, token, body)
    if status not in (200, 201, 202):
        sys.exit(f"demo: {method} {url} answered {status}: {answer}")
    return answer


def wait_until(what: str, check, deadline: float):
    last = None
    while time.monotonic() < deadline:
        try:
            result, last = check()
        except (OSError, ValueError) as error:  # not up yet
            result, last = None, repr(error)
        if result:
            return result
        time.sleep(1)
    sys.exit(f"demo: gave up waiting for {what}; last seen: {last}")


def main() -> None:
    api, ingest = os.environ["DEMO_API_URL"].rstrip("/"), os.environ["DEMO_INGEST_URL"].rstrip("/")
    admin, endpoint = os.environ["DEMO_ADMIN_TOKEN"], os.environ["DEMO_ENDPOINT_URL"]
    receiver = os.environ["DEMO_RECEIVER_URL"].rstrip("/")
    deadline = time.monotonic() + TIMEOUT
    for url in (f"{api}/readyz", f"{ingest}/readyz", f"{receiver}/received"):
        wait_until(url, lambda url=url: (call("GET", url)[0] == 200, url), deadline)

    run = uuid.uuid4().hex[:8]
    company = created("POST", f"{api}/v1/admin/companies", admin, {"name": f"demo-{run}"})
    application = created("POST", f"{api}/v1/admin/companies/{company['id']}/applications", admin,
                          {"name": "demo-crm", "event_manager_enabled": True})
    key = application["api_key"]
    configuration = created("POST", f"{api}/v1/delivery-configurations", key, {
        "name": "demo-realtime", "mode": "realtime", "active": True, "format": "json",
        "endpoints": [{"url": f"{endpoint.rstrip('/')}/demo/{run}", "active": True}]})
    created("POST", f"{api}/v1/subscriptions", key, {
        "topic": "SCG-Message", "delivery_configuration_id": configuration["id"], "start_at": "2020-01-01T00:00:00Z"})
    source = created("POST", f"{api}/v1/admin/sources", admin,
                     {"name": f"demo-source-{run}", "topics": ["SCG-Message"]})
    print(f"demo: company {company['id']}, configuration {configuration['id']} -> {endpoint}/demo/{run}", flush=True)

    published: list[str] = []
    matched = [False]

    def publish_until_delivered():
        # A new subscription takes a moment to reach the matcher, and an event matched before then
        # has no delivery: publish a new event every few seconds until one has a delivery, then
        # wait for that to be delivered.
        if not matched[0] and (not published or time.monotonic() - published_at[0] > 5):
            event_id = f"ev-demo-{run}-{len(published) + 1}"
            created("POST", f"{ingest}/v1/events", source["token"], {"events": [{
                "id": event_id, "topic": "SCG-Message", "event_type": "message.sent", "company_id": company["id"],
                "data": {"text": "hello from the Event Manager demo"}}]})
            published.append(event_id)
            published_at[0] = time.monotonic()
        for event_id in published:
            status, answer = call("GET", f"{api}/v1/events/{event_id}", key)
            deliveries = answer.get("deliveries", []) if status == 200 else []
            matched[0] = matched[0] or bool(deliveries)
            if any(d["status"] == "delivered" for d in deliveries):
                return event_id, None
        return None, f"published {published}; last answer {status}: {answer}"

    published_at = [0.0]
    event_id = wait_until("an event to be delivered", publish_until_delivered, deadline)
    arrived = wait_until(f"{event_id} at the receiver", lambda: (
        [r for r in call("GET", f"{receiver}/received")[1] if event_id in json.dumps(r["event"])], "not yet"),
        deadline)
    print(f"demo: event {event_id} delivered to {arrived[0]['path']} (webhook-id {arrived[0]['webhook_id']})",
          flush=True)


if __name__ == "__main__":
    main()
