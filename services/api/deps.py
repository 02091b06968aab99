"""Dependencies of the api routes: the database session, the settings, and the caller (a company,
by one of its API keys or its application's key, holding scopes; or the operator). A request
without `Authorization` may instead carry the web console's session cookie
(services/api/sessions.py): it resolves to the same company (or the operator) under the same
rules, plus a CSRF header on every change. A company route declares the scope it needs by the
caller it takes: `Reader`, `Writer` or `Bulk`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import credentials, scopes, sessions
from services.api.scopes import FULL
from shared import ratelimit
from shared.actor import Actor, act_as, client_address
from shared.errors import Forbidden, Unauthorized
from shared.security import same_secret
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
    # What this caller may do (services/api/scopes.py).
    scopes: frozenset[str] = FULL


async def _company(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    if _console_session(request, settings):
        identity = await sessions.authenticate(request, session, settings, role="company")
        act_as(request, Actor("console", identity.api_key_id or identity.application_id, None, identity.company_id,
                              client_address(request)))
        # A session signed in with a key spends that key's own bucket (the same subject as its
        # bearer requests, so a console adds nothing to the key's limit); a console link's session,
        # which belongs to no key, has the company's console bucket.
        signed_in_with = identity.api_key_id or identity.application_id
        await ratelimit.limit(request.app.state, settings,
                              f"key:{signed_in_with}" if signed_in_with else f"console:{identity.company_id}",
                              settings.api_rate_limit_per_minute, identity.company_id)
        return Caller(identity.company_id, identity.application_id, identity.scopes)
    token = _bearer(request)  # no credential at all: 401, without spending the address's budget
    credential = await ratelimit.authenticate(request.app.state, settings, client_address(request), token,
                                              lambda: credentials.find_enabled(session, token))
    act_as(request, Actor("api_key", credential.key_id or credential.application_id, credential.name,
                          credential.company_id, client_address(request)))
    await ratelimit.limit(request.app.state, settings, f"key:{credential.key_id or credential.application_id}",
                          settings.api_rate_limit_per_minute, credential.company_id)
    return Caller(credential.company_id, credential.application_id, credential.scopes)


def demand_scope(caller: Caller, scope: str, why: str) -> None:
    """403 naming `scope` unless the caller holds it; `why` completes "lacks the `scope` scope ..."."""
    if not scopes.grants(caller.scopes, scope):
        raise Forbidden(f"this credential lacks the `{scope}` scope {why} "
                        f"(it has: {', '.join(sorted(caller.scopes)) or 'none'})",
                        errors=[{"loc": ["header", "authorization"], "msg": f"requires scope `{scope}`"}])


def _requiring(scope: str):
    """The company caller, refused (403 naming the scope) unless it holds `scope`. The scope is
    kept on the dependency, so the OpenAPI document states each route's (`document_scopes`)."""

    async def company_with_scope(caller: Annotated[Caller, Depends(_company)]) -> Caller:
        demand_scope(caller, scope, "this route requires")
        return caller

    company_with_scope.required_scope = scope  # type: ignore[attr-defined]
    return company_with_scope


async def _operator(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    if _console_session(request, settings):
        await sessions.authenticate(request, session, settings, role="operator")
    else:
        token = _bearer(request)
        if not settings.admin_token or not same_secret(token, settings.admin_token):
            raise Unauthorized()
    act_as(request, Actor("operator", None, "operator", None, client_address(request)))


# Every company route takes exactly one of these: the scope it needs (services/api/scopes.py).
# tests/test_tenant_isolation.py fails for a company route that declares none.
Reader = Annotated[Caller, Depends(_requiring("read"))]
Writer = Annotated[Caller, Depends(_requiring("write"))]
Bulk = Annotated[Caller, Depends(_requiring("bulk"))]
OperatorDep = Annotated[None, Depends(_operator)]


def required_scope(route: APIRoute) -> str | None:
    """The scope a route declared through Reader, Writer or Bulk, if any."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if (scope := getattr(dependant.call, "required_scope", None)) is not None:
            return scope
        pending += dependant.dependencies
    return None


def api_routes(routes):
    """Every APIRoute, also those of included routers (FastAPI keeps an included router whole)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from api_routes(included.routes)


def document_scopes(openapi: dict, routes) -> dict:
    """Each company operation states its scope: `x-required-scope`, the bearer requirement's
    role list (OpenAPI 3.1), a line in the description, and its 403."""
    for route in api_routes(routes):
        if (scope := required_scope(route)) is None:
            continue
        for method in route.methods:
            operation = openapi.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["x-required-scope"] = scope
            operation["security"] = [{"bearer": [scope]}]
            operation["description"] = (f"**Scope:** `{scope}`. " + operation.get("description", "")).strip()
            refused = operation.setdefault("responses", {}).setdefault("403", {})
            refused["description"] = f"The application is disabled, or the credential lacks the `{scope}` scope"
            for field, also in operation.get("x-required-scope-when", {}).items():
                refused["description"] += f", or `{field}` is set and it lacks the `{also}` scope"
    scheme = openapi.get("components", {}).get("securitySchemes", {}).get("bearer")
    if scheme is not None:
        scheme["description"] = (
            "A company's API key (`emak_...` from /v1/api-keys, holding the scopes it was given, or its "
            "application's own `emk_...` key, holding every scope); the operator token under /v1/admin. Scopes: "
            "`read` (look only), `write` (changes; includes read), `bulk` (republish, bulk actions, replays). "
            "Each operation names its scope in `x-required-scope`.")
    return openapi
