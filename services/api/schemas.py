"""Request and response bodies shared by more than one route. `XCreate` / `XUpdate` are what
callers send, `XPublic` what they get back (a route's own answers, such as a page or a count,
live beside the route); secrets only ever travel inwards (responses say `password_set: true`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from shared.contracts import ContractSchema, Mode
from shared.statuses import DeliveryStatus
from shared.validation import Moment

Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def with_example(example: dict) -> ConfigDict:
    """Strict, with an example request for the OpenAPI page."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


# --- operator -----------------------------------------------------------------------------


class CompanyCreate(Strict):
    model_config = with_example({"name": "Acme Telecom"})

    name: Name


class CompanyPublic(BaseModel):
    id: str
    name: str
    created_at: datetime


class ApplicationCreate(Strict):
    model_config = with_example({"name": "crm-integration", "event_manager_enabled": True})

    name: Name
    event_manager_enabled: bool = Field(True, strict=True)


class ApplicationUpdate(Strict):
    model_config = with_example({"event_manager_enabled": False})

    event_manager_enabled: bool = Field(strict=True)


class ApplicationPublic(BaseModel):
    id: str
    company_id: str
    name: str
    event_manager_enabled: bool
    api_key: str | None = Field(None, description="Shown only when the key is created or rotated")


class ApplicationApiKey(BaseModel):
    api_key: str


class EventTypeCreate(Strict):
    model_config = with_example({"name": "message.expired", "description": "The message expired before delivery"})

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str = ""
    json_schema: ContractSchema = None
    example: dict[str, Any] | None = Field(None, description="An example `data`; must validate against json_schema")


class EventTypeUpdate(Strict):
    """What an operator changes of an event type; what is left out stays. `json_schema: null`
    removes the schema."""

    model_config = with_example({"json_schema": {"type": "object", "required": ["message_id"],
                                                 "properties": {"message_id": {"type": "string"}}},
                                 "example": {"message_id": "8812"}})

    description: str | None = None
    json_schema: ContractSchema = None
    example: dict[str, Any] | None = Field(None, description="An example `data`; must validate against json_schema")


class TopicUpdate(Strict):
    model_config = with_example({"validation_mode": "warn"})

    validation_mode: Mode = Field(description="What ingest does with data that violates its event type's schema: "
                                  "off (nothing), warn (accept, count, log), enforce (refuse the request, 422)")


class TopicCreate(Strict):
    model_config = with_example(
        {
            "name": "SCG-Survey",
            "service": "SMS and Voice Service",
            "description": "Survey answers",
            "event_types": [{"name": "survey.answered", "description": "A subscriber answered"}],
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")]
    service: Name
    description: str = ""
    requires_event_type: bool = False
    broadcast: bool = False
    validation_mode: Mode = "off"
    event_types: list[EventTypeCreate] = Field(default=[], max_length=1000)

    @field_validator("event_types")
    @classmethod
    def _distinct(cls, event_types: list[EventTypeCreate]) -> list[EventTypeCreate]:
        names = [t.name for t in event_types]
        if len(set(names)) != len(names):
            raise ValueError(f"event type names must be distinct: {sorted({n for n in names if names.count(n) > 1})}")
        return event_types


class EventTypePublic(BaseModel):
    name: str
    description: str
    json_schema: dict[str, Any] | None = Field(None, description="JSON Schema (Draft 2020-12) of the event's data")
    example: dict[str, Any] | None = Field(None, description="An example of the event's data")


class TopicPublic(BaseModel):
    name: str
    service: str
    description: str
    requires_event_type: bool
    broadcast: bool
    validation_mode: Mode = "off"
    event_types: list[EventTypePublic]

    @classmethod
    def of(cls, topic, event_types) -> TopicPublic:
        """A catalog topic (`shared.models.Topic`) and its event types, as both the company and
        the operator routes show them."""
        return cls(name=topic.name, service=topic.service, description=topic.description,
                   requires_event_type=topic.requires_event_type, broadcast=topic.broadcast,
                   validation_mode=topic.validation_mode,
                   event_types=[EventTypePublic(name=t.name, description=t.description, json_schema=t.json_schema,
                                                example=t.example) for t in event_types])


# --- delivery configurations --------------------------------------------------------------


class Endpoint(Strict):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    active: bool = True


class EndpointPublic(BaseModel):
    id: str
    url: str
    active: bool
    # Set when Event Manager disabled it: it answered 410 Gone, or failed for too long.
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    # When its failing began (what `enable` with `republish_failed` republishes from).
    failing_since: datetime | None = None


class EndpointEnable(Strict):
    model_config = with_example({"republish_failed": True})

    republish_failed: bool = Field(default=False, description="Also republish this configuration's deliveries "
                                   "that failed since the endpoint began failing.")


class Throttle(Strict):
    max_requests: int = Field(ge=1, le=100_000)
    per_seconds: float = Field(gt=0, le=86_400)


class Schedule(Strict):
    simple: Literal["hourly", "daily", "weekly", "monthly"] | None = None
    cron: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.simple is None) == (self.cron is None):
            raise ValueError("give exactly one of simple or cron")
        return self


class NoAuth(Strict):
    type: Literal["none"]


class BasicAuth(Strict):
    type: Literal["basic"]
    username: Annotated[str, Field(min_length=1, max_length=500)]
    password: Annotated[str, Field(min_length=1, max_length=500)]


class OAuth2Auth(Strict):
    type: Literal["oauth2"]
    token_url: Annotated[str, Field(min_length=1, max_length=2048)]
    client_id: Annotated[str, Field(min_length=1, max_length=500)]
    client_secret: Annotated[str, Field(min_length=1, max_length=2000)]
    scope: str | None = None
    grant_type: Literal["client_credentials", "password", "refresh_token"]
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    refresh_token_expires_at: Moment | None = None
    # How the client authenticates at the token endpoint (RFC 6749 2.3.1): an Authorization
    # header (client_secret_basic, the default) or client_id and client_secret in the form.
    client_auth_method: Literal["client_secret_basic", "client_secret_post"] | None = None
    audience: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    resource: Annotated[str, Field(min_length=1, max_length=2048)] | None = None

    @model_validator(mode="after")
    def _grant_needs(self):
        if self.grant_type == "password" and not (self.username and self.password):
            raise ValueError("the password grant needs username and password")
        if self.grant_type == "refresh_token" and not self.refresh_token:
            raise ValueError("the refresh_token grant needs refresh_token")
        return self


# RFC 9110 token: what a header name may be.
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
HeaderName = Annotated[str, Field(min_length=1, max_length=100, pattern=HEADER_NAME)]
# No CR, LF or NUL (header injection), nor other control characters but tab.
HeaderValue = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$")]
Pem = Annotated[str, Field(min_length=1, max_length=65_536)]


class ApiKeyAuth(Strict):
    """The key is sent in a header of the company's choosing (`Authorization` included)."""

    type: Literal["api_key"]
    header_name: HeaderName = "X-API-Key"
    api_key: HeaderValue

    @field_validator("header_name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() != "authorization":
            _allowed_headers({name: ""})
        return name


class MutualTlsAuth(Strict):
    """A client certificate and its key (PEM), and optionally the CA bundle (PEM) that issued
    the endpoint's server certificate, for a private PKI. Checked with `cryptography`."""

    type: Literal["mtls"]
    certificate: Pem
    private_key: Pem
    ca_bundle: Pem | None = None


Authentication = Annotated[NoAuth | BasicAuth | OAuth2Auth | ApiKeyAuth | MutualTlsAuth, Field(discriminator="type")]

# What a delivery may not set itself: Event Manager writes these (or HTTP does). `traceparent` is
# each attempt's W3C trace context (shared/tracing.py); `tracestate` belongs with it.
RESERVED_HEADERS = frozenset({
    "authorization", "connection", "content-encoding", "content-length", "content-type", "cookie", "date",
    "expect", "host", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "user-agent", "via", "traceparent", "tracestate",
})
RETRY_CLASSES = ("5xx", "429", "408", "409", "425", "timeout", "connection")


def _allowed_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    for name in headers or {}:
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("webhook-"):
            raise ValueError(f"header {name!r} is reserved: Event Manager sets it")
    if headers and len({name.lower() for name in headers}) < len(headers):
        raise ValueError("a header name appears twice (names are case-insensitive)")
    return headers


class DeliveryPolicy(Strict):
    """How this configuration's requests are made and retried; what is left out is the
    operator's default."""

    headers: Annotated[dict[HeaderName, HeaderValue] | None, Field(max_length=20),
                       AfterValidator(_allowed_headers)] = None
    timeout_seconds: float | None = Field(default=None, ge=1, le=60)
    method: Literal["POST", "PUT"] = "POST"
    retry_schedule: list[float] | None = Field(
        default=None, max_length=100, description="Seconds before each retry (the first attempt is at once); "
        "bounded by EM_RETRY_MIN_DELAY_SECONDS, EM_RETRY_MAX_DELAY_SECONDS and EM_RETRY_MAX_ATTEMPTS.")
    retry_on: list[Literal[RETRY_CLASSES]] | None = Field(
        default=None, description="Which failures are retried (default: all of them, and a 3xx); with "
        "retry_on, any other answer fails the delivery at once. Another 4xx is never retried.")
    ca_bundle: Pem | None = Field(default=None, description="PEM CA certificates the endpoint's server "
                                  "certificate must chain to (a private PKI); write-only.")


def _standard_webhooks_secret(secret: str | None) -> str | None:
    """`whsec_` + base64 of 24 to 64 random bytes, as the Standard Webhooks libraries expect."""
    import base64
    import binascii

    if secret is None:
        return None
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
        raise ValueError("signing_secret must be 'whsec_' followed by base64 of 24 to 64 bytes")
    return secret


SigningSecret = Annotated[str | None, AfterValidator(_standard_webhooks_secret)]
SECRET_FIELDS = ("password", "client_secret", "refresh_token", "api_key", "certificate", "private_key", "ca_bundle")


class DeliveryConfigurationCreate(Strict):
    name: Name
    mode: Literal["realtime", "scheduled"]
    active: bool = False
    paused: bool = False
    endpoints: list[Endpoint] = Field(default=[], max_length=20)
    format: Literal["json", "xml"] = "json"
    throttle: Throttle | None = None
    schedule: Schedule | None = None
    authentication: Authentication = NoAuth(type="none")
    signing_secret: SigningSecret = Field(None, description="Left out: the server generates one and shows it "
                                          "once, in this answer; null: deliveries are not signed")
    asymmetric_signing: bool = Field(False, description="Also sign with the company's ed25519 key (`v1a`), "
                                     "published at GET /v1/signing-keys")
    policy: DeliveryPolicy | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "crm-realtime",
                    "mode": "realtime",
                    "active": True,
                    "endpoints": [{"url": "https://crm.example.com/hooks", "active": True}],
                    "format": "json",
                    "throttle": {"max_requests": 20, "per_seconds": 1},
                    "authentication": {"type": "basic", "username": "em", "password": "s3cret"},
                }
            ]
        },
    )


# In the updates, a field left out keeps its value; `null` is accepted only where it means
# "remove" (throttle, schedule, signing secret, matching criteria, end), and refused (422) for
# the fields a configuration or subscription cannot be without: hence `T = None`, not `T | None`.
# services/api/store/patch.py merges an update onto the stored values by these rules.


class DeliveryConfigurationUpdate(Strict):
    model_config = with_example({"active": True, "throttle": {"max_requests": 50, "per_seconds": 1}})

    name: Name = None
    active: bool = None
    paused: bool = None
    endpoints: list[Endpoint] = Field(default=None, max_length=20)
    format: Literal["json", "xml"] = None
    throttle: Throttle | None = None
    schedule: Schedule | None = None
    authentication: Authentication = None
    signing_secret: SigningSecret = None
    asymmetric_signing: bool = None
    policy: DeliveryPolicy | None = None


class DeliveryConfigurationPublic(BaseModel):
    id: str
    name: str
    mode: str
    active: bool
    paused: bool
    endpoints: list[EndpointPublic]
    format: str
    throttle: dict | None
    schedule: dict | None
    next_fire_times: list[datetime] | None = None
    authentication: dict[str, Any]
    signing_secret_set: bool
    signing_secret: str | None = Field(None, description="Only in the answer that generated it (create)")
    signing_previous_expires_at: datetime | None = Field(
        None, description="During a rotation's grace period: when the previous secret stops signing")
    asymmetric_signing: bool = False
    # Header values and the CA bundle are write-only: `header_names` and `ca_bundle_set` instead.
    policy: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class ResumedPublic(BaseModel):
    configuration: DeliveryConfigurationPublic
    released: int = Field(description="Held deliveries released, oldest first, at the configuration's throttle")


class EndpointEnabledPublic(BaseModel):
    configuration: DeliveryConfigurationPublic
    republished: int = Field(description="Failed deliveries republished (with `republish_failed`)")


# --- subscriptions ------------------------------------------------------------------------


class SubscriptionCreate(Strict):
    topic: Name
    event_types: list[str] = []
    delivery_configuration_id: Name
    matching_criteria: dict[str, Any] | None = None
    start_at: Moment
    end_at: Moment | None = None
    active: bool = True

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "topic": "SCG-Message",
                    "event_types": ["message.delivered"],
                    "delivery_configuration_id": "dc_01J...",
                    "matching_criteria": {"data": {"keyword": ["STOP"]}},
                    "start_at": "2026-12-01T00:00:00Z",
                    "end_at": None,
                    "active": True,
                }
            ]
        },
    )


class SubscriptionUpdate(Strict):
    model_config = with_example({"active": False})

    event_types: list[str] = None
    delivery_configuration_id: Name = None
    matching_criteria: dict[str, Any] | None = None
    start_at: Moment = None
    end_at: Moment | None = None
    active: bool = None


class SubscriptionPublic(BaseModel):
    id: str
    topic: str
    event_types: list[str]
    delivery_configuration_id: str
    matching_criteria: dict[str, Any] | None
    start_at: datetime
    end_at: datetime | None
    active: bool
    created_at: datetime
    updated_at: datetime


# --- monitored numbers --------------------------------------------------------------------

E164 = r"\+[1-9][0-9]{6,14}"


class MonitoredNumbers(Strict):
    model_config = with_example({"numbers": ["+14155550100", "+4915123456789"]})

    numbers: list[str] = Field(min_length=1, max_length=200_000)

    @field_validator("numbers")
    @classmethod
    def _e164(cls, numbers: list[str]) -> list[str]:
        import re

        pattern = re.compile(E164)
        bad = [i for i, n in enumerate(numbers) if not isinstance(n, str) or not pattern.fullmatch(n)]
        if bad:
            shown = ", ".join(f"[{i}] {numbers[i]!r}" for i in bad[:10])
            raise ValueError(f"not E.164 numbers (+ and 7-15 digits): {shown}{' ...' if len(bad) > 10 else ''}")
        return numbers


# --- event search and bulk actions ----------------------------------------------------------


# Inline in the OpenAPI document (`enum: [...]`), as the search parameter always was. With a
# `$ref` instead, tests/test_openapi_fuzz.py's derandomized schemathesis draws another negative
# case for GET /v1/events, one of schemathesis's known false positives (`subject` "mutated" to an
# array that serializes to the valid string `false`, upstream issues #2900 and #4600).
StatusFilter = Annotated[DeliveryStatus, WithJsonSchema({"type": "string", "enum": [s.value for s in DeliveryStatus]})]


# One model for the search parameters of `GET /v1/events`, the `filter` of a bulk action and
# what a bulk job stores (`stored()`), so the three cannot drift apart.
class EventFilter(Strict):
    """What a search selects. Filters combine with AND; `status`, `delivery_configuration_id` and
    `subscription_id` select events having such a delivery."""

    id: str | None = None
    topic: str | None = None
    event_type: str | None = None
    status: StatusFilter | None = Field(None, description="events having a delivery in this status")
    delivery_configuration_id: str | None = Field(None, description="events having a delivery through it")
    subscription_id: str | None = Field(None, description="events having a delivery for it")
    subject: str | None = None
    # `from` is a Python keyword, hence the alias; it is the only name callers see.
    from_: Moment | None = Field(None, alias="from", description="events received at or after this time")
    to: Moment | None = Field(None, description="events received before this time")

    @field_serializer("from_", "to", when_used="json-unless-none")
    def _as_iso(self, moment: datetime) -> str:
        return moment.isoformat()  # as bulk jobs have always stored it (`+00:00`, not pydantic's `Z`)

    def stored(self) -> dict:
        """The filter as a bulk job keeps it: JSON, the filters given and no others."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class EventSearch(EventFilter):
    """The query parameters of `GET /v1/events`: a filter and a page."""

    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")
