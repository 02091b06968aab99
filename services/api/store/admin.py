"""Operator objects: companies, their applications (API keys) and source services (tokens).
Keys and tokens are stored as digests: the functions that make one return it, once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit, credentials
from services.api.access_schemas import SourceCreate, SourceUpdate
from services.api.schemas import ApplicationCreate
from services.api.store import saved
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import Application, Company, Source, Topic
from shared.operations import OPERATIONS_TOPIC
from shared.security import digest, new_secret


async def create_company(session: AsyncSession, name: str) -> Company:
    company = Company(id=new_id("cmp"), name=name)
    audit.record(session, "company.create", "company", company.id, after={"name": name}, company_id=company.id)
    return await saved(session, company)


async def companies(session: AsyncSession) -> list[Company]:
    """Every company, oldest first."""
    return list((await session.scalars(select(Company).order_by(Company.id))).all())


async def create_application(session: AsyncSession, company_id: str,
                             body: ApplicationCreate) -> tuple[Application, str]:
    """The application and its API key (kept only as a digest)."""
    if await session.get(Company, company_id) is None:
        raise NotFound(f"company {company_id} does not exist")
    api_key = new_secret("emk")
    application = Application(id=new_id("app"), company_id=company_id, name=body.name,
                              event_manager_enabled=body.event_manager_enabled, api_key_digest=digest(api_key))
    session.add(application)
    audit.record(session, "application.create", "application", application.id,
                 after={"name": body.name, "event_manager_enabled": body.event_manager_enabled}, company_id=company_id)
    return application, api_key


async def find_application(session: AsyncSession, application_id: str) -> Application:
    application = await session.get(Application, application_id)
    if application is None:
        raise NotFound(f"application {application_id} does not exist")
    return application


async def set_enabled(session: AsyncSession, application_id: str, enabled: bool) -> Application:
    application = await find_application(session, application_id)
    if application.event_manager_enabled != enabled:
        audit.record(session, "application.update", "application", application.id,
                     {"event_manager_enabled": application.event_manager_enabled}, {"event_manager_enabled": enabled},
                     company_id=application.company_id)
    application.event_manager_enabled = enabled
    return application


async def rotate_key(session: AsyncSession, application_id: str) -> str:
    """A new API key; the old one stops working when this commits."""
    application = await find_application(session, application_id)
    api_key = new_secret("emk")
    application.api_key_digest = digest(api_key)
    audit.record(session, "application.rotate_key", "application", application.id, company_id=application.company_id)
    return api_key


def _audited_source(source: Source) -> dict:
    """What the audit log keeps of a source: never a token digest."""
    return {"name": source.name, "topics": list(source.topics), "enabled": source.enabled,
            "company_ids": source.company_ids, "previous_token_expires_at": source.previous_token_expires_at}


async def _checked_topics(session: AsyncSession, topics: list[str]) -> list[str]:
    """Every topic must be in the catalog, and none Event Manager's own (422 naming the index)."""
    known = set((await session.scalars(select(Topic.name).where(Topic.name.in_(topics)))).all())
    for index, topic in enumerate(topics):
        if topic not in known:
            raise InvalidInput.at(["topics", index], f"unknown topic {topic!r}")
        if topic == OPERATIONS_TOPIC:
            raise InvalidInput.at(["topics", index], f"{topic} is Event Manager's own topic; no source publishes to it")
    return topics


async def _checked_companies(session: AsyncSession, company_ids: list[str] | None) -> list[str] | None:
    """Every company must exist (422 naming the index); None (any company) stays None."""
    if company_ids is None:
        return None
    known = set((await session.scalars(select(Company.id).where(Company.id.in_(company_ids)))).all())
    for index, company_id in enumerate(company_ids):
        if company_id not in known:
            raise InvalidInput.at(["company_ids", index], f"unknown company {company_id!r}")
    return company_ids


async def create_source(session: AsyncSession, body: SourceCreate) -> tuple[Source, str]:
    """The source and its token (kept only as a digest)."""
    token = new_secret("ems")
    source = Source(id=new_id("src"), name=body.name, topics=await _checked_topics(session, body.topics),
                    company_ids=await _checked_companies(session, body.company_ids), token_digest=digest(token),
                    enabled=True)
    audit.record(session, "source.create", "source", source.id, after=_audited_source(source), company_id=None)
    return await saved(session, source), token


async def sources(session: AsyncSession) -> list[Source]:
    """Every source service, oldest first."""
    return list((await session.scalars(select(Source).order_by(Source.id))).all())


async def find_source(session: AsyncSession, source_id: str, lock: bool = False) -> Source:
    source = await session.get(Source, source_id, with_for_update=lock or None)
    if source is None:
        raise NotFound(f"source {source_id} does not exist")
    return source


async def update_source(session: AsyncSession, source_id: str, body: SourceUpdate) -> Source:
    """What the body sends changes; `company_ids: null` sent lifts the limit."""
    source = await find_source(session, source_id, lock=True)
    before = _audited_source(source)
    sent = body.model_fields_set
    if "name" in sent:  # null is refused for name, topics and enabled (SourceUpdate)
        source.name = body.name
    if "topics" in sent:
        source.topics = await _checked_topics(session, body.topics)
    if "company_ids" in sent:
        source.company_ids = await _checked_companies(session, body.company_ids)
    if "enabled" in sent:
        source.enabled = body.enabled
    audit.record_changes(session, "source.update", "source", source.id, before, _audited_source(source),
                         company_id=None)
    return await saved(session, source)


async def delete_source(session: AsyncSession, source_id: str) -> None:
    source = await find_source(session, source_id, lock=True)
    audit.record(session, "source.delete", "source", source.id, before=_audited_source(source), company_id=None)
    await session.delete(source)


async def rotate_source_token(session: AsyncSession, source_id: str, overlap_seconds: int) -> tuple[Source, str]:
    """A new token; the current one keeps working for `overlap_seconds` (0: refused at once), and
    an earlier previous token stops at once."""
    source = await find_source(session, source_id, lock=True)
    before = _audited_source(source)
    token = new_secret("ems")
    source.previous_token_digest, source.previous_token_expires_at = await credentials.rotated(
        session, source.token_digest, overlap_seconds)
    source.token_digest = digest(token)
    audit.record(session, "source.rotate_token", "source", source.id, before, _audited_source(source),
                 company_id=None)
    return await saved(session, source), token


async def end_source_overlap(session: AsyncSession, source_id: str) -> Source:
    """The previous token of a rotation is refused from now on."""
    source = await find_source(session, source_id, lock=True)
    before = _audited_source(source)
    source.previous_token_digest = source.previous_token_expires_at = None
    audit.record_changes(session, "source.revoke_previous_token", "source", source.id, before,
                         _audited_source(source), company_id=None)
    return await saved(session, source)
