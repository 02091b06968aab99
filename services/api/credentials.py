"""Which company credential a bearer token is: a company API key (`emak_...`, table api_keys,
with its scopes) or an application's own key (`emk_...`, every scope). Used by the bearer
dependency (services/api/deps.py) and by console sign-in (services/api/sessions.py), so both
apply the same rules: a revoked or expired key, or a previous secret past its rotation's
overlap, is unknown (401); a key of an application whose Event Manager access is disabled is
known but refused (403, `find_enabled`).

The prefix picks the one table to look in, so any token costs one indexed read. Times are the
database's (`now()`), so every api replica agrees on when an overlap or an expiry ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.scopes import FULL
from shared.errors import Forbidden
from shared.models import ApiKey, Application
from shared.security import digest

API_KEY_PREFIX = "emak"  # a company's own API key; the application's key is "emk"


@dataclass(frozen=True)
class CompanyCredential:
    company_id: str
    application_id: str
    # The API key's id, or None for the application's own key.
    key_id: str | None
    name: str
    scopes: frozenset[str]
    application_enabled: bool
    # The digest the token matched (the key's current or previous secret).
    token_digest: str


def usable_key(token_digest: str) -> ColumnElement[bool]:
    """The api_keys row whose current secret, or previous secret within its overlap, this is,
    and which is neither revoked nor expired."""
    return and_(
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        or_(ApiKey.key_digest == token_digest,
            and_(ApiKey.previous_key_digest == token_digest, ApiKey.previous_expires_at > func.now())),
    )


async def find(session: AsyncSession, token: str) -> CompanyCredential | None:
    token_digest = digest(token)
    if token.startswith(f"{API_KEY_PREFIX}_"):
        found = (await session.execute(
            select(ApiKey, Application.event_manager_enabled)
            .join(Application, Application.id == ApiKey.application_id)
            .where(usable_key(token_digest)))).first()
        if found is None:
            return None
        key, enabled = found
        return CompanyCredential(key.company_id, key.application_id, key.id, key.name, frozenset(key.scopes),
                                 enabled, token_digest)
    application = await session.scalar(select(Application).where(Application.api_key_digest == token_digest))
    if application is None:
        return None
    return CompanyCredential(application.company_id, application.id, None, application.name, FULL,
                             application.event_manager_enabled, token_digest)


async def find_enabled(session: AsyncSession, token: str) -> CompanyCredential | None:
    """`find`, and 403 for a key of an application whose Event Manager access is disabled."""
    found = await find(session, token)
    if found is not None and not found.application_enabled:
        raise Forbidden("this application does not have Event Manager enabled")
    return found


async def database_time(session: AsyncSession, seconds_ahead: float = 0) -> datetime:
    """The database's now() plus `seconds_ahead`: deadlines are computed on the clock that checks
    them (`usable_key`, ingest's source lookup), never on this replica's."""
    return await session.scalar(select(func.now() + func.make_interval(0, 0, 0, 0, 0, 0, float(seconds_ahead))))


async def rotated(session: AsyncSession, current_digest: str,
                  overlap_seconds: int) -> tuple[str | None, datetime | None]:
    """A rotation's previous secret and until when it works: the current one for `overlap_seconds`,
    or none at all (0: refused at once). The rule for API keys and source tokens alike."""
    if overlap_seconds <= 0:
        return None, None
    return current_digest, await database_time(session, overlap_seconds)
