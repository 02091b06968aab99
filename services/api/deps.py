"""Dependencies of the api routes: the database session, the settings, and the caller (a company,
by its application's API key, or the operator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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


@dataclass(frozen=True)
class Caller:
    company_id: str
    application_id: str


async def _company(request: Request, session: SessionDep) -> Caller:
    application = await session.scalar(
        select(Application).where(Application.api_key_digest == digest(_bearer(request)))
    )
    if application is None:
        raise Unauthorized()
    if not application.event_manager_enabled:
        raise Forbidden("this application does not have Event Manager enabled")
    return Caller(application.company_id, application.id)


def _operator(request: Request, settings: SettingsDep) -> None:
    token = _bearer(request)
    if not settings.admin_token or not same_secret(token, settings.admin_token):
        raise Unauthorized()


CompanyDep = Annotated[Caller, Depends(_company)]
OperatorDep = Annotated[None, Depends(_operator)]
