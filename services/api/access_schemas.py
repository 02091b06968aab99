"""Request and response bodies of access management (issue 16): company API keys
(`/v1/api-keys`) and the operator's source services (`/v1/admin/sources`). Secrets only ever
appear in the answer that makes them (`key`, `token`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from services.api.schemas import Name, Strict, with_example
from services.api.scopes import Scope
from shared.validation import Moment

MAX_OVERLAP_SECONDS = 30 * 24 * 3600
CompanyId = Annotated[str, Field(min_length=1, max_length=100)]
TopicName = Annotated[str, Field(min_length=1, max_length=200)]


def _distinct(values: list) -> list:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("each value once")
    return values


class Rotation(Strict):
    model_config = with_example({"overlap_seconds": 86400})

    overlap_seconds: int = Field(0, ge=0, le=MAX_OVERLAP_SECONDS, strict=True, description=(
        "How long the previous secret keeps working beside the new one: 1 s to 30 days; 0 (the default) "
        "refuses it at once. A rotation during an overlap ends the earlier overlap at once (only the "
        "latest previous secret is kept)"))


# --- company API keys ---------------------------------------------------------------------------


class ApiKeyCreate(Strict):
    model_config = with_example({"name": "reporting", "scopes": ["read"], "expires_at": "2027-06-30T00:00:00Z"})

    name: Name
    scopes: list[Scope] = Field(min_length=1, max_length=3, description=(
        "`read` (look only), `write` (change configurations; includes `read`), `bulk` (republish, bulk "
        "actions, replays; includes nothing else). A key may only give scopes it holds itself"))
    expires_at: Moment | None = Field(None, description="From then on the key is refused (401); at least 1 s "
                                                        "ahead. Null: never")
    application_id: str | None = Field(None, min_length=1, max_length=100, description=(
        "The company's application the key belongs to (disabling it refuses the key); default the calling "
        "key's. Required from a console link's session"))

    _distinct_scopes = field_validator("scopes")(_distinct)


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    application_id: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None = Field(description="Set once revoked: the key is refused from then on")
    previous_expires_at: datetime | None = Field(description="After a rotation with overlap: until when the "
                                                             "previous secret still works")
    created_at: datetime


class ApiKeyPage(BaseModel):
    data: list[ApiKeyPublic]
    next_cursor: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret (`emak_...`): shown only in this answer, stored as a digest. Send it "
                                 "as `Authorization: Bearer <key>`")


# --- source services ----------------------------------------------------------------------------


class SourceCreate(Strict):
    model_config = with_example({"name": "sms-gateway", "topics": ["SCG-Message", "SCG-Keyword"]})

    name: Name
    topics: list[TopicName] = Field(min_length=1, max_length=100)
    company_ids: list[CompanyId] | None = Field(None, max_length=10_000, description=(
        "The companies this source may publish for (403 for another's event); null: any. Broadcast topics "
        "(NIS-Events) carry no company and are not limited by it"))

    _distinct_companies = field_validator("company_ids")(_distinct)
    _distinct_topics = field_validator("topics")(_distinct)


class SourceUpdate(Strict):
    """What is sent changes; what is left out stays. `company_ids: null` lifts the limit."""

    model_config = with_example({"topics": ["SCG-Message"], "enabled": False})

    # Left out: unchanged; null only where it means something (company_ids), else 422 naming the
    # field: hence `T = None`, not `T | None` (the rule of every update, services/api/schemas.py).
    name: Name = None
    topics: list[TopicName] = Field(None, min_length=1, max_length=100)
    company_ids: list[CompanyId] | None = Field(None, max_length=10_000)
    enabled: bool = Field(None, strict=True, description="A disabled source's tokens are refused at once (403)")

    _distinct_companies = field_validator("company_ids")(_distinct)
    _distinct_topics = field_validator("topics")(_distinct)


class SourcePublic(BaseModel):
    id: str
    name: str
    topics: list[str]
    company_ids: list[str] | None = None
    enabled: bool = True
    previous_token_expires_at: datetime | None = Field(None, description="After a rotation with overlap: until "
                                                                          "when the previous token still works")
    created_at: datetime | None = None
    token: str | None = Field(None, description="Shown only when the source is created or its token rotated")
