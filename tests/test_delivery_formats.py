"""What arrives at the endpoint: XML parsed back with a real parser, and Standard Webhooks
signatures verified with the `standardwebhooks` library."""

from __future__ import annotations

import base64
import os
import uuid
from xml.etree import ElementTree

from standardwebhooks.webhooks import Webhook

from services.dispatcher.formats import to_xml
from tests.conftest import realtime_configuration, settle, subscribe, unique_path

TRICKY = {"text": "Tom & Jerry <say> \"hi\" ' ]]>", "amount": 12.5, "count": 3, "ok": True, "none": None,
          "nested": {"keyword": "STOP", "list": [1, "two"]}, "bad key!": "x"}


async def test_xml_delivery_is_well_formed_and_carries_the_json_fields(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path), format="xml")
    subscription = await subscribe(tenant, configuration["id"])
    await settle()
    event_id = f"xml-{uuid.uuid4().hex}"
    await source.post("/v1/events", json={"id": event_id, "topic": "SCG-Message", "event_type": "message.sent",
                                          "company_id": tenant.id, "subject": "+4915100000000", "data": TRICKY})
    [request] = await receiver.wait_for(path, 1)
    assert request.headers["Content-Type"] == "application/xml"
    root = ElementTree.fromstring(request.body)
    assert root.tag == "event"
    assert root.findtext("id") == event_id
    assert root.findtext("topic") == "SCG-Message"
    assert root.findtext("event_type") == "message.sent"
    assert root.findtext("company_id") == tenant.id
    assert root.findtext("subject") == "+4915100000000"
    assert root.findtext("subscription_id") == subscription["id"]
    data = root.find("data")
    assert data.findtext("text") == TRICKY["text"]
    assert data.find("amount").get("type") == "number" and data.findtext("amount") == "12.5"
    assert data.findtext("ok") == "true"
    assert data.find("none").get("nil") == "true"
    assert data.find("nested").findtext("keyword") == "STOP"
    assert [item.text for item in data.find("nested").find("list")] == ["1", "two"]
    assert data.find("field[@name='bad key!']").text == "x"


def test_xml_drops_characters_xml_cannot_carry():
    body = to_xml({"id": "1", "data": {"s": "a\x00b\x1fc"}})
    assert ElementTree.fromstring(body).find("data").findtext("s") == "abc"


async def test_signed_delivery_verifies_with_standard_webhooks(tenant, source, receiver):
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path), signing_secret=secret)
    assert configuration["signing_secret_set"] is True
    assert secret not in str(configuration)
    await subscribe(tenant, configuration["id"])
    await settle()
    await source.post("/v1/events", json={"topic": "SCG-Message", "event_type": "message.sent",
                                          "company_id": tenant.id, "data": TRICKY})
    [request] = await receiver.wait_for(path, 1)
    headers = {k.lower(): v for k, v in request.headers.items()}
    verified = Webhook(secret).verify(request.body, headers)
    assert verified["data"] == TRICKY
    assert headers["webhook-id"].startswith("dlv_")

    wrong = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    try:
        Webhook(wrong).verify(request.body, headers)
    except Exception:
        pass
    else:
        raise AssertionError("a signature must not verify under another secret")


async def test_signing_secret_must_be_a_standard_webhooks_secret(tenant, receiver):
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "x", "mode": "realtime", "endpoints": [{"url": receiver.url("/x")}], "signing_secret": "short"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["signing_secret"]
