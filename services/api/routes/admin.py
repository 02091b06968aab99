"""Operator API: companies, applications and their keys, sources, the topic catalog."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.api.deps import OperatorDep, SessionDep
from services.api.routes.topics import topic_public
from services.api.schemas import (
    ApiKey,
    ApplicationCreate,
    ApplicationPublic,
    ApplicationUpdate,
    CompanyCreate,
    CompanyPublic,
    EventTypeIn,
    SourceCreate,
    SourcePublic,
    TopicCreate,
    TopicPublic,
)
from shared.errors import Conflict, InvalidInput, NotFound
from shared.ids import new_id
from shared.models import Application, Company, EventType, Source, Topic
from shared.security import digest, new_secret

router = APIRouter(prefix="/v1/admin", tags=["operator"])


@router.post("/companies", status_code=201, response_model=CompanyPublic, summary="Create a company")
async def create_company(body: CompanyCreate, session: SessionDep, _: OperatorDep):
    """A company owns applications, delivery configurations, subscriptions and its events."""
    company = Company(id=new_id("cmp"), name=body.name)
    session.add(company)
    await session.commit()
    await session.refresh(company)
    return company


@router.get("/companies", response_model=list[CompanyPublic], summary="List companies")
async def list_companies(session: SessionDep, _: OperatorDep):
    """Every company, oldest first."""
    return (await session.scalars(select(Company).order_by(Company.id))).all()


@router.post(
    "/companies/{company_id}/applications",
    status_code=201,
    response_model=ApplicationPublic,
    summary="Create an application and its API key",
    description="The API key is returned in this response only; it is stored as a digest.",
)
async def create_application(company_id: str, body: ApplicationCreate, session: SessionDep, _: OperatorDep):
    if await session.get(Company, company_id) is None:
        raise NotFound(f"company {company_id} does not exist")
    api_key = new_secret("emk")
    application = Application(
        id=new_id("app"),
        company_id=company_id,
        name=body.name,
        event_manager_enabled=body.event_manager_enabled,
        api_key_digest=digest(api_key),
    )
    session.add(application)
    await session.commit()
    return ApplicationPublic(**_application_fields(application), api_key=api_key)


def _application_fields(application: Application) -> dict:
    return {
        "id": application.id,
        "company_id": application.company_id,
        "name": application.name,
        "event_manager_enabled": application.event_manager_enabled,
    }


async def _application(session, application_id: str) -> Application:
    application = await session.get(Application, application_id)
    if application is None:
        raise NotFound(f"application {application_id} does not exist")
    return application


@router.patch("/applications/{application_id}", response_model=ApplicationPublic, summary="Enable or disable")
async def update_application(application_id: str, body: ApplicationUpdate, session: SessionDep, _: OperatorDep):
    """A disabled application's key answers 403 on every company route until it is enabled again."""
    application = await _application(session, application_id)
    application.event_manager_enabled = body.event_manager_enabled
    await session.commit()
    return ApplicationPublic(**_application_fields(application))


@router.post("/applications/{application_id}/rotate-key", response_model=ApiKey, summary="Rotate the API key")
async def rotate_key(application_id: str, session: SessionDep, _: OperatorDep):
    """Issues a new API key (shown once) and invalidates the old one immediately."""
    application = await _application(session, application_id)
    api_key = new_secret("emk")
    application.api_key_digest = digest(api_key)
    await session.commit()
    return ApiKey(api_key=api_key)


@router.post("/sources", status_code=201, response_model=SourcePublic, summary="Register a source service")
async def create_source(body: SourceCreate, session: SessionDep, _: OperatorDep):
    """A source service (SMS, NIS, MSS, batch automation...) gets a token, shown once, that may publish only the
    listed topics."""
    known = set((await session.scalars(select(Topic.name).where(Topic.name.in_(body.topics)))).all())
    for index, topic in enumerate(body.topics):
        if topic not in known:
            raise InvalidInput.at(["topics", index], f"unknown topic {topic!r}")
    token = new_secret("ems")
    source = Source(id=new_id("src"), name=body.name, topics=body.topics, token_digest=digest(token))
    session.add(source)
    await session.commit()
    return SourcePublic(id=source.id, name=source.name, topics=source.topics, token=token)


@router.post("/topics", status_code=201, response_model=TopicPublic, summary="Add a topic to the catalog")
async def create_topic(body: TopicCreate, session: SessionDep, _: OperatorDep):
    """Adds a topic and its event types to the catalog companies subscribe from."""
    session.add(Topic(**body.model_dump(exclude={"event_types"})))
    session.add_all(EventType(topic=body.name, **t.model_dump()) for t in body.event_types)
    try:
        await session.commit()
    except IntegrityError:
        raise Conflict(f"topic {body.name!r} already exists") from None
    return await topic_public(session, body.name)


@router.post(
    "/topics/{topic}/event-types", status_code=201, response_model=TopicPublic, summary="Add an event type"
)
async def add_event_type(topic: str, body: EventTypeIn, session: SessionDep, _: OperatorDep):
    """Adds one event type to an existing topic."""
    if await session.get(Topic, topic) is None:
        raise NotFound(f"topic {topic!r} does not exist")
    session.add(EventType(topic=topic, **body.model_dump()))
    try:
        await session.commit()
    except IntegrityError:
        raise Conflict(f"event type {body.name!r} already exists on {topic!r}") from None
    return await topic_public(session, topic)
