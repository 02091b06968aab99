"""schemathesis over both OpenAPI documents, against the running test stack: whatever it sends
(valid or not), no answer is a 5xx, and every answer matches the document (status documented,
problem+json for errors, bodies matching their schemas).

Company routes use a fuzz tenant's API key, `/v1/admin` the operator token, ingest a source
token. Adding topics and event types would change the catalog other tests rely on, so those two
operations are fuzzed without credentials (their answers are then 401 or 422)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.api.app import app as api_app
from services.ingest.app import app as ingest_app
from tests.conftest import ALL_TOPICS

# ~25 generated requests per operation and no coverage phase keep both documents within ~60 s.
CONFIG = SchemathesisConfig.from_dict({
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "generation": {"max-examples": 25},
})
FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                         database=None)
# Inputs valid by the schema may still be refused by rules the schema cannot express (an unknown
# company, a topic this source may not publish): a 4xx there is right, not a failure.
EXCLUDED_CHECKS = [positive_data_acceptance]
CATALOG_WRITES = ("/v1/admin/topics",)

api_schema = schemathesis.openapi.from_dict(api_app.openapi(), config=CONFIG)
ingest_schema = schemathesis.openapi.from_dict(ingest_app.openapi(), config=CONFIG)


@dataclass
class Credentials:
    admin: str
    api_key: str
    source: str


@pytest.fixture(scope="module")
def credentials(stack, urls) -> Credentials:
    admin = stack.env["EM_ADMIN_TOKEN"]
    with httpx.Client(base_url=urls.api, headers={"authorization": f"Bearer {admin}"}, timeout=30) as client:
        company = client.post("/v1/admin/companies", json={"name": f"fuzz-{uuid.uuid4().hex[:6]}"}).json()
        application = client.post(f"/v1/admin/companies/{company['id']}/applications", json={"name": "fuzz"}).json()
        source = client.post("/v1/admin/sources", json={"name": "fuzz", "topics": ALL_TOPICS}).json()
    return Credentials(admin, application["api_key"], source["token"])


def _api_token(path: str, credentials: Credentials) -> str:
    if path.startswith(CATALOG_WRITES):
        return "not-a-token"
    return credentials.admin if path.startswith("/v1/admin") else credentials.api_key


@api_schema.parametrize()
@FUZZ_SETTINGS
def test_api_answers_match_its_document(case, urls, credentials):
    token = _api_token(case.path, credentials)
    case.call_and_validate(base_url=urls.api, headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=EXCLUDED_CHECKS)


@ingest_schema.parametrize()
@FUZZ_SETTINGS
def test_ingest_answers_match_its_document(case, urls, credentials):
    case.call_and_validate(base_url=urls.ingest, headers={"Authorization": f"Bearer {credentials.source}"},
                           excluded_checks=EXCLUDED_CHECKS)
