"""Dependencies of the api routes: the database session, the settings, and the caller (a company,
by its application's API key, or the operator). A request without `Authorization` may instead
carry the web console's session cookie (services/api/sessions.py): it resolves to the same
company (or the operator) under the same rules, plus a CSRF header on every change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import sessions
from services.api.actor import Actor, act_as, client_address
from shared.errors import Forbidden, Unauthorized
from shared.models import Application
from shared.security import digest, same_secret
from shared.settings import Settings


async def _session(request: Request):
    async with request.app.state.db.sessions() as session:
        yield session


def _settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[AsyncSession, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def _console_session(request: Request, settings: Settings) -> bool:
    """No Authorization header but the console's cookie: the request is the console's."""
    return "authorization" not in request.headers and sessions.has_cookie(request, settings)


@dataclass(frozen=True)
class Caller:
    company_id: str
    # None for a console link's session, which belongs to the company rather than to one key.
    application_id: str | None


async def _company(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    if _console_session(request, settings):
        identity = await sessions.authenticate(request, session, settings, role="company")
        act_as(request, Actor("console", identity.application_id, None, identity.company_id,
                              client_address(request)))
        return Caller(identity.company_id, identity.application_id)
    application = await session.scalar(
        select(Application).where(Application.api_key_digest == digest(_bearer(request)))
    )
    if application is None:
        raise Unauthorized()
    if not application.event_manager_enabled:
        raise Forbidden("this application does not have Event Manager enabled")
    act_as(request, Actor("api_key", application.id, application.name, application.company_id,
                          client_address(request)))
    return Caller(application.company_id, application.id)


async def _operator(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    if _console_session(request, settings):
        await sessions.authenticate(request, session, settings, role="operator")
    else:
        token = _bearer(request)
        if not settings.admin_token or not same_secret(token, settings.admin_token):
            raise Unauthorized()
    act_as(request, Actor("operator", None, "operator", None, client_address(request)))


CompanyDep = Annotated[Caller, Depends(_company)]
OperatorDep = Annotated[None, Depends(_operator)]
