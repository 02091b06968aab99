"""Operator API: companies, applications and their keys, the topic catalog (sources: routes/sources.py)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api import sessions
from services.api.deps import OperatorDep, SessionDep
from services.api.schemas import (
    ApplicationApiKey,
    ApplicationCreate,
    ApplicationPublic,
    ApplicationUpdate,
    CompanyCreate,
    CompanyPublic,
    EventTypeCreate,
    EventTypeUpdate,
    TopicCreate,
    TopicPublic,
    TopicUpdate,
)
from services.api.store import admin as store
from services.api.store import topics
from shared.models import Application

router = APIRouter(prefix="/v1/admin", tags=["operator"])


def _application(application: Application, api_key: str | None = None) -> ApplicationPublic:
    return ApplicationPublic(id=application.id, company_id=application.company_id, name=application.name,
                             event_manager_enabled=application.event_manager_enabled, api_key=api_key)


@router.post("/companies", status_code=201, response_model=CompanyPublic, summary="Create a company")
async def create_company(body: CompanyCreate, session: SessionDep, _: OperatorDep):
    """A company owns applications, delivery configurations, subscriptions and its events."""
    company = await store.create_company(session, body.name)
    await session.commit()
    return company


@router.get("/companies", response_model=list[CompanyPublic], summary="List companies")
async def list_companies(session: SessionDep, _: OperatorDep):
    """Every company, oldest first."""
    return await store.companies(session)


@router.post(
    "/companies/{company_id}/applications",
    status_code=201,
    response_model=ApplicationPublic,
    summary="Create an application and its API key",
    description="The API key is returned in this response only; it is stored as a digest.",
)
async def create_application(company_id: str, body: ApplicationCreate, session: SessionDep, _: OperatorDep):
    application, api_key = await store.create_application(session, company_id, body)
    await session.commit()
    return _application(application, api_key)


@router.patch("/applications/{application_id}", response_model=ApplicationPublic, summary="Enable or disable")
async def update_application(application_id: str, body: ApplicationUpdate, session: SessionDep, _: OperatorDep):
    """A disabled application's key answers 403 on every company route until it is enabled again; the
    console sessions it opened end."""
    application = await store.set_enabled(session, application_id, body.event_manager_enabled)
    if not body.event_manager_enabled:
        await sessions.end_for_application(session, application_id)
    await session.commit()
    return _application(application)


@router.post("/applications/{application_id}/rotate-key", response_model=ApplicationApiKey,
             summary="Rotate the API key")
async def rotate_key(application_id: str, session: SessionDep, _: OperatorDep):
    """Issues a new API key (shown once) and invalidates the old one immediately, with the console
    sessions it opened."""
    api_key = await store.rotate_key(session, application_id)
    await sessions.end_for_application(session, application_id)
    await session.commit()
    return ApplicationApiKey(api_key=api_key)


@router.post("/topics", status_code=201, response_model=TopicPublic, summary="Add a topic to the catalog")
async def create_topic(body: TopicCreate, session: SessionDep, _: OperatorDep):
    """Adds a topic and its event types to the catalog companies subscribe from."""
    await topics.create(session, body)
    await session.commit()
    return TopicPublic.of(*await topics.find(session, body.name))


@router.post(
    "/topics/{topic}/event-types", status_code=201, response_model=TopicPublic, summary="Add an event type"
)
async def add_event_type(topic: str, body: EventTypeCreate, session: SessionDep, _: OperatorDep):
    """Adds one event type to an existing topic."""
    await topics.add_event_type(session, topic, body)
    await session.commit()
    return TopicPublic.of(*await topics.find(session, topic))


@router.patch("/topics/{topic}", response_model=TopicPublic, summary="Set a topic's validation mode")
async def update_topic(topic: str, body: TopicUpdate, session: SessionDep, _: OperatorDep):
    """`validation_mode`: what ingest does with data that violates its event type's schema: `off` (nothing),
    `warn` (accepted, counted in `em_ingest_schema_violations_total`, logged once a minute per event type),
    `enforce` (the request is refused whole, 422 naming `events.<i>.data.<path>`). Ingest applies a change
    within its catalog refresh (10 s)."""
    await topics.update(session, topic, body)
    await session.commit()
    return TopicPublic.of(*await topics.find(session, topic))


@router.patch("/topics/{topic}/event-types/{event_type}", response_model=TopicPublic,
              summary="Set an event type's schema and example")
async def update_event_type(topic: str, event_type: str, body: EventTypeUpdate, session: SessionDep,
                            _: OperatorDep):
    """Sets what is sent of `description`, `json_schema` (Draft 2020-12; `null` removes it) and `example`.
    An invalid schema, or an example that does not validate against the schema, is a 422 naming the field
    (and the path within the example). Ingest applies a changed schema within its catalog refresh (10 s)."""
    await topics.update_event_type(session, topic, event_type, body)
    await session.commit()
    return TopicPublic.of(*await topics.find(session, topic))
