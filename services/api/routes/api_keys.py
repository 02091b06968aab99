"""A company's own API keys: create (shown once), list, rotate with an overlap, end the overlap,
revoke. Scopes are in services/api/scopes.py; a key never hands out a scope it does not hold."""

from __future__ import annotations

from fastapi import APIRouter, Query

from services.api import scopes
from services.api.access_schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyPublic, Rotation
from services.api.deps import Caller, Reader, SessionDep, Writer
from services.api.pagination import decode_cursor, encode_cursor
from services.api.store import api_keys as store
from shared.errors import Forbidden

router = APIRouter(prefix="/v1/api-keys", tags=["API keys"])
LISTING = "api-keys"


def _public(key) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(key, from_attributes=True)


def _created(key, secret: str) -> ApiKeyCreated:
    return ApiKeyCreated(**_public(key).model_dump(), key=secret)


def _may_hand_out(caller: Caller, wanted: list[str]) -> None:
    """A key that could give more than it holds would be a way around its own scopes."""
    for scope in wanted:
        if not scopes.grants(caller.scopes, scope):
            raise Forbidden(f"this credential lacks the `{scope}` scope, so it cannot give it to a key",
                            errors=[{"loc": ["scopes"], "msg": f"`{scope}` is not held by the caller"}])


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create an API key",
             description="A key for one of the company's applications with a name, scopes (`read`, `write`, "
                         "`bulk`; only scopes the calling credential holds) and an optional expiry (at least 1 s "
                         "ahead). The secret (`key`) is in this answer only; it is stored as a SHA-256 digest. "
                         "While the application's Event Manager access is disabled, its keys get 403. A company "
                         "may have at most 100 live (neither revoked nor expired) keys: 409 beyond.")
async def create(body: ApiKeyCreate, session: SessionDep, caller: Writer):
    _may_hand_out(caller, body.scopes)
    key, secret = await store.create(session, caller.company_id, caller.application_id, body)
    await session.commit()
    return _created(key, secret)


@router.get("", response_model=ApiKeyPage, summary="List API keys")
async def list_keys(session: SessionDep, caller: Reader, limit: int = Query(50, ge=1, le=500),
                    cursor: str | None = Query(None, max_length=500, description="`next_cursor` of the previous page")):
    """The company's keys, revoked ones included (with `revoked_at`), oldest first; never a secret.
    The application's own key (the operator's) is not listed here. Pass `next_cursor` back as
    `cursor` for the next page."""
    after = decode_cursor(cursor, LISTING)[0] if cursor else None
    keys, more = await store.page(session, caller.company_id, after, limit)
    return ApiKeyPage(data=[_public(key) for key in keys],
                      next_cursor=encode_cursor(LISTING, keys[-1].id) if more else None)


@router.get("/{key_id}", response_model=ApiKeyPublic, summary="Get an API key")
async def get(key_id: str, session: SessionDep, caller: Reader):
    """One key, without its secret."""
    return _public(await store.find(session, caller.company_id, key_id))


@router.post("/{key_id}/rotate", response_model=ApiKeyCreated, summary="Rotate an API key",
             description="A new secret, shown once. The previous one keeps working for `overlap_seconds` (1 s to "
                         "30 days; 0, the default, stops it at once), then is refused (401); "
                         "`previous_expires_at` says until when. Only a credential holding every scope of the key "
                         "may rotate it. A revoked key cannot be rotated (409).")
async def rotate(key_id: str, body: Rotation, session: SessionDep, caller: Writer):
    _may_hand_out(caller, (await store.find(session, caller.company_id, key_id)).scopes)
    key, secret = await store.rotate(session, caller.company_id, key_id, body.overlap_seconds)
    await session.commit()
    return _created(key, secret)


@router.post("/{key_id}/revoke-previous", response_model=ApiKeyPublic, summary="End a rotation's overlap now")
async def revoke_previous(key_id: str, session: SessionDep, caller: Writer):
    """The previous secret of the last rotation is refused from now on; the current one keeps working."""
    key = await store.end_overlap(session, caller.company_id, key_id)
    await session.commit()
    return _public(key)


@router.post("/{key_id}/revoke", response_model=ApiKeyPublic, summary="Revoke an API key")
async def revoke(key_id: str, session: SessionDep, caller: Writer):
    """The key (its current and any previous secret) is refused (401) from now on, on every api
    replica (each request looks the key up), and console sessions it opened end. The key stays
    listed with `revoked_at`."""
    key = await store.revoke(session, caller.company_id, key_id)
    await session.commit()
    return _public(key)
