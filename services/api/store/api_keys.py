"""A company's own API keys (issue 16): made, listed, rotated and revoked by the company. A key
belongs to one of the company's applications; its secret is returned once and kept as a
SHA-256 digest. Revoking keeps the row (the list shows when), so a key id in the audit log
still names something. Which token is which key: services/api/credentials.py."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.access_schemas import ApiKeyCreate
from services.api.credentials import API_KEY_PREFIX, database_time, rotated
from services.api.store import find_owned, saved
from shared.errors import Conflict, InvalidInput
from shared.ids import new_id
from shared.models import ApiKey, Application, Company
from shared.security import digest, new_secret

# Keys that work (neither revoked nor expired) a company may have at once: each is looked up and
# listed, so a tenant's count is bounded like everything else it controls.
MAX_LIVE_KEYS = 100
MIN_LIFETIME_SECONDS = 1  # an expiry at least this far ahead, on the database's clock


def _audited(key: ApiKey) -> dict:
    """What the audit log keeps of a key: never a digest."""
    return {"name": key.name, "application_id": key.application_id, "scopes": list(key.scopes),
            "expires_at": key.expires_at, "revoked_at": key.revoked_at, "previous_expires_at": key.previous_expires_at}


async def find(session: AsyncSession, company_id: str, key_id: str, lock: bool = False) -> ApiKey:
    return await find_owned(session, ApiKey, company_id, key_id, "API key", lock=lock)


async def page(session: AsyncSession, company_id: str, after: str | None, limit: int) -> tuple[list[ApiKey], bool]:
    """One page of the company's keys, revoked ones included, oldest first (ids sort by creation),
    after the key id `after`; and whether more follow."""
    query = select(ApiKey).where(ApiKey.company_id == company_id)
    if after is not None:
        query = query.where(ApiKey.id > after)
    keys = list((await session.scalars(query.order_by(ApiKey.id).limit(limit + 1))).all())
    return keys[:limit], len(keys) > limit


async def _room_for_one_more(session: AsyncSession, company_id: str) -> None:
    """409 when the company already has `MAX_LIVE_KEYS` keys that work (neither revoked nor
    expired). The company's row is locked first, so concurrent creations cannot both pass."""
    await session.execute(select(Company.id).where(Company.id == company_id).with_for_update())
    live = await session.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.company_id == company_id, ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now())))
    if live >= MAX_LIVE_KEYS:
        raise Conflict(f"the company already has {MAX_LIVE_KEYS} live API keys, the most it may have; "
                       "revoke one it no longer uses first")


async def create(session: AsyncSession, company_id: str, application_id: str | None,
                 body: ApiKeyCreate) -> tuple[ApiKey, str]:
    """The key and its secret. It belongs to `application_id` (the body's, else the caller's)."""
    application_id = body.application_id or application_id
    if application_id is None:
        raise InvalidInput.at(["application_id"], "name the application the key belongs to")
    await find_owned(session, Application, company_id, application_id, "application")
    await _room_for_one_more(session, company_id)
    if body.expires_at is not None and body.expires_at < await database_time(session, MIN_LIFETIME_SECONDS):
        raise InvalidInput.at(["expires_at"], "must be at least 1 s ahead")
    secret = new_secret(API_KEY_PREFIX)
    key = ApiKey(id=new_id("key"), company_id=company_id, application_id=application_id, name=body.name,
                 scopes=body.scopes, key_digest=digest(secret), expires_at=body.expires_at)
    audit.record(session, "api_key.create", "api_key", key.id, after=_audited(key), company_id=company_id)
    return await saved(session, key), secret


async def rotate(session: AsyncSession, company_id: str, key_id: str, overlap_seconds: int) -> tuple[ApiKey, str]:
    """A new secret; the current one keeps working for `overlap_seconds` (0: stops at once), and
    an earlier previous secret stops at once."""
    key = await find(session, company_id, key_id, lock=True)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked; create a new one")
    if key.expires_at is not None and key.expires_at <= await database_time(session):
        raise Conflict(f"API key {key_id} has expired; create a new one")
    before = _audited(key)
    secret = new_secret(API_KEY_PREFIX)
    key.previous_key_digest, key.previous_expires_at = await rotated(session, key.key_digest, overlap_seconds)
    key.key_digest = digest(secret)
    audit.record(session, "api_key.rotate", "api_key", key.id, before, _audited(key), company_id=company_id)
    return await saved(session, key), secret


async def end_overlap(session: AsyncSession, company_id: str, key_id: str) -> ApiKey:
    """The previous secret of a rotation stops working now."""
    key = await find(session, company_id, key_id, lock=True)
    before = _audited(key)
    key.previous_key_digest = key.previous_expires_at = None
    audit.record_changes(session, "api_key.revoke_previous", "api_key", key.id, before, _audited(key),
                         company_id=company_id)
    return await saved(session, key)


async def revoke(session: AsyncSession, company_id: str, key_id: str) -> ApiKey:
    """The key (current and previous secret) is refused from the commit on; revoking twice is a no-op."""
    key = await find(session, company_id, key_id, lock=True)
    if key.revoked_at is None:
        before = _audited(key)
        key.revoked_at = datetime.now(UTC)
        key.previous_key_digest = key.previous_expires_at = None
        audit.record(session, "api_key.revoke", "api_key", key.id, *audit.changed(before, _audited(key)),
                     company_id=company_id)
    return await saved(session, key)
