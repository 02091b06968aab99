"""Operator objects: companies, their applications (API keys) and source services (tokens).
Keys and tokens are stored as digests: the functions that make one return it, once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.schemas import ApplicationCreate, SourceCreate
from services.api.store import saved
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import Application, Company, Source, Topic
from shared.operations import OPERATIONS_TOPIC
from shared.security import digest, new_secret


async def create_company(session: AsyncSession, name: str) -> Company:
    return await saved(session, Company(id=new_id("cmp"), name=name))


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
    return application, api_key


async def find_application(session: AsyncSession, application_id: str) -> Application:
    application = await session.get(Application, application_id)
    if application is None:
        raise NotFound(f"application {application_id} does not exist")
    return application


async def set_enabled(session: AsyncSession, application_id: str, enabled: bool) -> Application:
    application = await find_application(session, application_id)
    application.event_manager_enabled = enabled
    return application


async def rotate_key(session: AsyncSession, application_id: str) -> str:
    """A new API key; the old one stops working when this commits."""
    application = await find_application(session, application_id)
    api_key = new_secret("emk")
    application.api_key_digest = digest(api_key)
    return api_key


async def create_source(session: AsyncSession, body: SourceCreate) -> tuple[Source, str]:
    """The source and its token (kept only as a digest); every topic must be in the catalog."""
    known = set((await session.scalars(select(Topic.name).where(Topic.name.in_(body.topics)))).all())
    for index, topic in enumerate(body.topics):
        if topic not in known:
            raise InvalidInput.at(["topics", index], f"unknown topic {topic!r}")
        if topic == OPERATIONS_TOPIC:
            raise InvalidInput.at(["topics", index], f"{topic} is Event Manager's own topic; no source publishes to it")
    token = new_secret("ems")
    source = Source(id=new_id("src"), name=body.name, topics=body.topics, token_digest=digest(token))
    session.add(source)
    return source, token
