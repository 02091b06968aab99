"""The web console's sign-in: server-side sessions behind an HttpOnly, SameSite=Strict cookie, and
the one-time console links an operator mints for a company.

- **Where a session lives.** In PostgreSQL (`console_sessions`, migration 0011), keyed by the
  SHA-256 of the cookie's random token: every api replica sees the same sessions, sign-out and a
  rotated or disabled key end a session at once on all of them, and a console link can be used
  once. A signed cookie alone could do neither. The lookup is one primary-key read joined to the
  application, the same read a bearer key costs; `last_seen_at` is written at most once a minute.
- **The cookie.** `em_console` (`__Host-em_console` with EM_REQUIRE_HTTPS, which adds `Secure`),
  `HttpOnly` (page scripts never see it), `SameSite=Strict` (a browser never sends it with a
  request another site starts, not even a top-level link: the console's pages are static and
  fetch their data themselves, so Strict costs nothing and Lax would only add risk), `Path=/`,
  `Max-Age` the absolute lifetime.
- **CSRF.** Every state-changing request made with the cookie must carry `X-CSRF-Token`, an HMAC
  of the session under a key derived from EM_SECRET_KEY, which the console reads from
  `GET /v1/console/session`. Another site can neither read that answer (no CORS) nor send a
  custom header without a CORS preflight, which this API never grants; SameSite=Strict already
  keeps the cookie off its requests. Sign-in (which takes no cookie) refuses a browser's
  cross-site request (`Sec-Fetch-Site`), and, as every body, must be JSON.
- **Lifetime.** `EM_CONSOLE_IDLE_SECONDS` (8 h) without a request, `EM_CONSOLE_MAX_SECONDS` (12 h)
  after sign-in. Each request also checks that the API key is still the application's (not
  rotated), that the application is still enabled, and for the operator that the token is still
  `EM_ADMIN_TOKEN`; otherwise the session is deleted and the answer is 401.
- **Scopes.** A session signed in with a company API key (`emak_...`) has that key's scopes,
  and ends when the key is revoked, expires, or is rotated (after the rotation's overlap); one
  signed in with an application's own key, or opened from a console link, has every scope.
- **Console links.** `POST /v1/admin/companies/{id}/console-sessions` stores the SHA-256 of a
  random token with a short expiry (`EM_CONSOLE_LINK_SECONDS`, 5 min); opening the link deletes
  that row (`DELETE ... RETURNING`, so two concurrent openings cannot both win) and signs the
  company in. A link session belongs to the company, not to an application key.

Bearer authentication (`Authorization: Bearer`) is unchanged and wins when both are present.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit, credentials
from services.api.scopes import FULL
from shared import ratelimit
from shared.actor import client_address
from shared.errors import Forbidden, NotFound, Unauthorized
from shared.models import ApiKey, Application, Company, ConsoleSession
from shared.security import digest, new_secret, same_secret
from shared.settings import Settings

COOKIE = "em_console"
SECURE_COOKIE = "__Host-em_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY = timedelta(seconds=60)


class ConsoleSignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"credential": "emk_…"}]})
    credential: str = Field(min_length=1, max_length=512,
                            description="A company application's API key, or the operator token")


class ConsoleSessionInfo(BaseModel):
    role: str = Field(description="`company` or `operator`")
    company_id: str | None = None
    application_id: str | None = Field(None, description="The application whose key signed in; null for a "
                                                         "console link's session and the operator")
    api_key_id: str | None = Field(None, description="The company API key that signed in, if one did")
    scopes: list[str] = Field(description="What the session may do: the signing key's scopes; every scope "
                                          "for an application's own key, a console link and the operator")
    csrf_token: str = Field(description=f"Send it as `{CSRF_HEADER}` with every POST, PATCH, PUT and DELETE "
                                        "made with the session cookie")
    expires_at: datetime = Field(description="The session ends then, whatever happens")
    idle_expires_at: datetime = Field(description="The session ends then unless a request comes first")


class ConsoleLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ttl_seconds": 300}]})
    ttl_seconds: int | None = Field(None, ge=30, le=3600,
                                    description="How long the link may be opened (once); default "
                                                "EM_CONSOLE_LINK_SECONDS, 300")


class ConsoleLink(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "url": "https://events.example.com/console/link?token=emc_3q2m…",
        "company_id": "cmp_01HZX3…", "expires_at": "2026-11-02T10:05:00Z"}]})
    url: str = Field(description="Open it once, before `expires_at`, in a browser (a redirect from the provider's "
                                 "portal, say): it signs the company in and lands on /console")
    company_id: str
    expires_at: datetime


@dataclass(frozen=True)
class ConsoleIdentity:
    session_id: str
    role: str
    company_id: str | None
    application_id: str | None
    expires_at: datetime
    last_seen_at: datetime
    api_key_id: str | None = None
    scopes: frozenset[str] = FULL


def cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if settings.require_https else COOKIE


def set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(cookie_name(settings), token, max_age=int(settings.console_max_seconds), path="/",
                        secure=settings.require_https, httponly=True, samesite="strict")


def clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(cookie_name(settings), path="/", secure=settings.require_https, httponly=True,
                           samesite="strict")


def has_cookie(request: Request, settings: Settings) -> bool:
    return bool(request.cookies.get(cookie_name(settings)))


def csrf_token(settings: Settings, session_id: str) -> str:
    key = hashlib.sha256(f"console-csrf:{settings.secret_key}".encode()).digest()
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


def info(identity: ConsoleIdentity, settings: Settings) -> ConsoleSessionInfo:
    idle_end = identity.last_seen_at + timedelta(seconds=settings.console_idle_seconds)
    return ConsoleSessionInfo(role=identity.role, company_id=identity.company_id,
                              application_id=identity.application_id, api_key_id=identity.api_key_id,
                              scopes=sorted(identity.scopes),
                              csrf_token=csrf_token(settings, identity.session_id),
                              expires_at=identity.expires_at, idle_expires_at=min(idle_end, identity.expires_at))


def _now() -> datetime:
    return datetime.now(UTC)


def _identity(row: ConsoleSession, key: ApiKey | None = None) -> ConsoleIdentity:
    return ConsoleIdentity(row.id, row.role, row.company_id, row.application_id, row.expires_at, row.last_seen_at,
                           row.api_key_id, frozenset(key.scopes) if key is not None else FULL)


def refuse_cross_site(request: Request) -> None:
    """A browser names where a request comes from; sign-in is only ever started by the console itself."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("console sign-in is accepted from the console's own pages only")


async def _purge(db: AsyncSession, settings: Settings, now: datetime) -> None:
    idle_since = now - timedelta(seconds=settings.console_idle_seconds)
    await db.execute(delete(ConsoleSession).where(or_(
        ConsoleSession.expires_at <= now,
        and_(ConsoleSession.kind == "session", ConsoleSession.last_seen_at <= idle_since))))


async def _start(db: AsyncSession, settings: Settings, role: str, company_id: str | None = None,
                 application_id: str | None = None, credential_digest: str | None = None,
                 key: ApiKey | None = None) -> tuple[str, ConsoleIdentity]:
    """A new session row; the caller commits. Returns the cookie's token (never stored) and the identity."""
    now = _now()
    await _purge(db, settings, now)
    token = new_secret("emcs")
    row = ConsoleSession(id=digest(token), kind="session", role=role, company_id=company_id,
                         application_id=application_id, credential_digest=credential_digest,
                         api_key_id=key.id if key is not None else None, created_at=now,
                         last_seen_at=now, expires_at=now + timedelta(seconds=settings.console_max_seconds))
    db.add(row)
    return token, _identity(row, key)


def _refused(detail: str) -> Unauthorized:
    refused = Unauthorized(detail)
    refused.errors = [{"loc": ["credential"], "msg": detail}]
    return refused


async def sign_in(db: AsyncSession, settings: Settings, credential: str) -> tuple[str, ConsoleIdentity]:
    """A session for an API key (the company) or the operator token. 401 or 403 name `credential`."""
    credential = credential.strip()
    if settings.admin_token and same_secret(credential, settings.admin_token):
        return await _start(db, settings, "operator", credential_digest=digest(credential))
    found = await credentials.find(db, credential)
    if found is None:
        raise _refused("this API key or operator token is not accepted")
    if not found.application_enabled:
        raise Forbidden("this application does not have Event Manager enabled",
                        errors=[{"loc": ["credential"], "msg": "this application does not have Event Manager enabled"}])
    key = await db.get(ApiKey, found.key_id) if found.key_id else None
    return await _start(db, settings, "company", found.company_id, found.application_id, found.token_digest, key)


def _why_ended(row: ConsoleSession, application: Application | None, key_usable: bool, settings: Settings,
               now: datetime) -> str | None:
    if now >= row.expires_at:
        return "the console session reached its time limit"
    if now - row.last_seen_at >= timedelta(seconds=settings.console_idle_seconds):
        return "the console session was idle too long"
    if row.role == "operator":
        current = settings.admin_token
        return None if current and digest(current) == row.credential_digest else "the operator token was changed"
    if row.application_id is None:
        return None  # a console link's session belongs to the company
    if row.api_key_id is not None:
        if not key_usable:
            return "the API key was revoked, rotated or expired"
    elif application is None or application.api_key_digest != row.credential_digest:
        return "the API key was rotated"
    if application is None or not application.event_manager_enabled:
        return "the application's Event Manager access was disabled"
    return None


async def _live_session(db: AsyncSession, settings: Settings, token: str):
    """The cookie's session row (with its application and key) and now; 401 when there is none or
    it ended (an ended one is deleted)."""
    # Whether the signing key still takes the session's secret is credentials' own rule (current
    # secret, or previous within its overlap; not revoked or expired), on the database's clock.
    found = (await db.execute(
        select(ConsoleSession, Application, ApiKey,
               credentials.usable_key(ConsoleSession.credential_digest).label("key_usable"))
        .outerjoin(Application, Application.id == ConsoleSession.application_id)
        .outerjoin(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
        .where(ConsoleSession.id == digest(token), ConsoleSession.kind == "session"))).first()
    if found is None:
        raise Unauthorized("the console session has ended; sign in again")
    row, application, key, key_usable = found
    now = _now()
    if (reason := _why_ended(row, application, bool(key_usable), settings, now)) is not None:
        await db.delete(row)
        await db.commit()
        raise Unauthorized(f"{reason}; sign in again")
    return row, application, key, now


def _check_csrf(request: Request, settings: Settings, session_id: str) -> None:
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), csrf_token(settings, session_id).encode()):
        msg = "a change made with the console session needs the X-CSRF-Token header from GET /v1/console/session"
        raise Forbidden(msg, errors=[{"loc": ["header", CSRF_HEADER], "msg": "missing or wrong"}])


async def authenticate(request: Request, db: AsyncSession, settings: Settings,
                       role: str | None = None) -> ConsoleIdentity:
    """The session of the request's cookie, checked on every request: its time limits, its key or
    token, its role, and for a change the CSRF header. 401 when there is none or it ended."""
    token = request.cookies.get(cookie_name(settings))
    if not token:
        raise Unauthorized()
    # An unknown or ended session's cookie spends the address's failed-authentication budget, as
    # a wrong bearer key does, so made-up cookies cannot make the database look up more.
    row, application, key, now = await ratelimit.authenticate(
        request.app.state, settings, client_address(request), token, lambda: _live_session(db, settings, token))
    if role is not None and row.role != role:
        raise Unauthorized(f"this console session is not signed in as {role}")
    _check_csrf(request, settings, row.id)
    identity = _identity(row, key)
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        await db.commit()
    return identity


async def sign_out(request: Request, db: AsyncSession, settings: Settings) -> None:
    """Deletes the request's session (the CSRF header is required when there is one)."""
    try:
        identity = await authenticate(request, db, settings)
    except Unauthorized:
        return  # nothing (left) to end
    await db.execute(delete(ConsoleSession).where(ConsoleSession.id == identity.session_id))
    await db.commit()


async def end_for_application(db: AsyncSession, application_id: str) -> None:
    """Ends every console session the application's key opened (it was disabled or rotated)."""
    await db.execute(delete(ConsoleSession).where(ConsoleSession.application_id == application_id))


async def mint_link(db: AsyncSession, settings: Settings, company_id: str,
                    ttl_seconds: int | None) -> tuple[str, datetime]:
    """A one-time console link's token for a company, and when it expires; the caller commits."""
    if await db.get(Company, company_id) is None:
        raise NotFound(f"company {company_id} does not exist")
    now = _now()
    await _purge(db, settings, now)
    token = new_secret("emc")
    expires_at = now + timedelta(seconds=ttl_seconds or settings.console_link_seconds)
    db.add(ConsoleSession(id=digest(token), kind="link", role="company", company_id=company_id, created_at=now,
                          last_seen_at=now, expires_at=expires_at))
    # Who let someone into the company's console, and until when (never the link's token).
    audit.record(db, "console_link.create", "console_link", None, after={"expires_at": expires_at},
                 company_id=company_id)
    return token, expires_at


async def redeem_link(db: AsyncSession, settings: Settings, token: str) -> str | None:
    """The session token a console link opens, once and before it expires; None otherwise.
    The caller commits."""
    used = (await db.execute(
        delete(ConsoleSession).where(ConsoleSession.id == digest(token), ConsoleSession.kind == "link")
        .returning(ConsoleSession.company_id, ConsoleSession.expires_at))).first()
    if used is None or used.expires_at <= _now() or used.company_id is None:
        return None
    session_token, _ = await _start(db, settings, "company", used.company_id)
    return session_token
