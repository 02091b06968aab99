"""The web console's sign-in and sign-out (a session cookie, services/api/sessions.py), and the
operator's one-time console links for a company."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import delete

from services.api import sessions
from services.api.deps import OperatorDep, SessionDep, SettingsDep
from services.api.sessions import ConsoleLink, ConsoleLinkCreate, ConsoleSessionInfo, ConsoleSignIn
from shared import ratelimit
from shared.actor import client_address
from shared.errors import Unauthorized
from shared.models import ConsoleSession
from shared.security import digest

router = APIRouter(tags=["console"])

NO_BEARER = {"security": []}
LINK_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


async def _forget_previous(request: Request, db: SessionDep, settings: SettingsDep) -> None:
    """Signing in again replaces the browser's previous session: that one ends too."""
    previous = request.cookies.get(sessions.cookie_name(settings))
    if previous:
        await db.execute(delete(ConsoleSession).where(ConsoleSession.id == digest(previous),
                                                      ConsoleSession.kind == "session"))


@router.post("/v1/console/session", response_model=ConsoleSessionInfo, summary="Sign in to the web console",
             openapi_extra=NO_BEARER)
async def sign_in(body: ConsoleSignIn, request: Request, response: Response, db: SessionDep,
                  settings: SettingsDep):
    """The console posts the pasted API key (or operator token) here once. The answer sets the
    session cookie (HttpOnly, SameSite=Strict) and gives the CSRF token that every change made with
    the cookie must send as `X-CSRF-Token`. The key is not kept by the browser. A wrong key is 401,
    a disabled application 403, both naming `credential`."""
    sessions.refuse_cross_site(request)
    # A wrong credential spends the address's failed-authentication budget, as a bearer key does.
    token, identity = await ratelimit.authenticate(request.app.state, settings, client_address(request),
                                                   body.credential.strip(),
                                                   lambda: sessions.sign_in(db, settings, body.credential))
    await _forget_previous(request, db, settings)
    await db.commit()
    sessions.set_cookie(response, settings, token)
    response.headers["cache-control"] = "no-store"
    return sessions.info(identity, settings)


@router.get("/v1/console/session", response_model=ConsoleSessionInfo, summary="The console session",
            openapi_extra=NO_BEARER,
            responses={204: {"description": "This browser has no live console session (never signed in, signed "
                                            "out, or the session ended); the console shows its sign-in form"}})
async def current_session(request: Request, response: Response, db: SessionDep, settings: SettingsDep):
    """Who the session cookie signs in, until when, and its CSRF token. Without a live session the
    answer is 204 (not 401: a console just opened has nothing to be refused), and the cookie is cleared."""
    try:
        identity = await sessions.authenticate(request, db, settings)
    except Unauthorized:
        empty = Response(status_code=204, headers={"cache-control": "no-store"})
        if sessions.has_cookie(request, settings):
            sessions.clear_cookie(empty, settings)
        return empty
    response.headers["cache-control"] = "no-store"
    return sessions.info(identity, settings)


@router.delete("/v1/console/session", status_code=204, summary="Sign out of the web console",
               openapi_extra=NO_BEARER)
async def sign_out(request: Request, db: SessionDep, settings: SettingsDep):
    """Ends the session on the server (a copy of the cookie no longer works) and clears the cookie.
    Needs `X-CSRF-Token` like every change."""
    await sessions.sign_out(request, db, settings)
    response = Response(status_code=204)
    sessions.clear_cookie(response, settings)
    return response


@router.post(
    "/v1/admin/companies/{company_id}/console-sessions",
    status_code=201,
    response_model=ConsoleLink,
    tags=["operator"],
    summary="Mint a one-time console link for a company",
    responses={201: {"content": {"application/json": {"example": {
        "url": "https://events.example.com/console/link?token=emc_3q2m9Xr0…",
        "company_id": "cmp_01HZX3…", "expires_at": "2026-11-02T10:05:00Z"}}}}},
)
async def create_console_link(company_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                              _: OperatorDep, body: Annotated[ConsoleLinkCreate | None, Body(openapi_examples={
                                  "default": {"summary": "The default 5 minutes", "value": {}},
                                  "ttl": {"summary": "A 2-minute link", "value": {"ttl_seconds": 120}}})] = None):
    """For a provider that embeds the console in its own portal: the portal's back end asks for a
    link when its user opens the console and sends the browser there. Opening it signs the company
    in (a session cookie, as if it had pasted a key) and redirects to `/console/`. The link works
    once, for `ttl_seconds` (default 300); an opened, expired or unknown link leads to the sign-in
    page instead. The token is stored only as a digest and shown only here.

    Example: `curl -X POST $API/v1/admin/companies/cmp_…/console-sessions -H "authorization: Bearer $ADMIN"`
    then redirect the user's browser to `url`."""
    token, expires_at = await sessions.mint_link(db, settings, company_id, body.ttl_seconds if body else None)
    await db.commit()
    return ConsoleLink(url=f"{settings.api_base_url}/console/link?token={token}", company_id=company_id,
                       expires_at=expires_at)


@router.get("/console/link", include_in_schema=False, status_code=303,
            responses={303: {"description": "To /console/, signed in; or to the sign-in page if the link was "
                                            "already used, expired or unknown"}})
async def open_console_link(request: Request, db: SessionDep, settings: SettingsDep,
                            token: str = Query(min_length=1, max_length=200)):
    """Signs in the company of a console link minted by
    `POST /v1/admin/companies/{id}/console-sessions`, once, and redirects to the console."""
    session_token = await sessions.redeem_link(db, settings, token)
    if session_token is None:
        await db.commit()
        return RedirectResponse("/console/?link=expired", status_code=303, headers=LINK_HEADERS)
    await _forget_previous(request, db, settings)
    await db.commit()
    response = RedirectResponse("/console/", status_code=303, headers=LINK_HEADERS)
    sessions.set_cookie(response, settings, session_token)
    return response
