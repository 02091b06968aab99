"""Operator API for source services: register (token shown once), list, show, change topics,
name, company limit or enabled, delete, rotate the token with an overlap, end the overlap.

Ingest checks a token against the database on every request (services/ingest/app.py,
`Sources`: in the same call that claims the request's ids), so whatever these routes commit (a
rotation's end, a disabled, deleted or narrowed source) holds on every ingest replica from the
next request on."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.api.access_schemas import Rotation, SourceCreate, SourcePublic, SourceUpdate
from services.api.deps import OperatorDep, SessionDep
from services.api.store import admin as store
from shared.models import Source

router = APIRouter(prefix="/v1/admin/sources", tags=["operator"])


def _public(source: Source, token: str | None = None) -> SourcePublic:
    return SourcePublic(id=source.id, name=source.name, topics=source.topics, company_ids=source.company_ids,
                        enabled=source.enabled, previous_token_expires_at=source.previous_token_expires_at,
                        created_at=source.created_at, token=token)


@router.post("", status_code=201, response_model=SourcePublic, summary="Register a source service")
async def create_source(body: SourceCreate, session: SessionDep, _: OperatorDep):
    """A source service (SMS, NIS, MSS, batch automation...) gets a token, shown once, that may publish only the
    listed topics, and with `company_ids` only for those companies (an event for another is a 403 naming it;
    broadcast topics such as NIS-Events carry no company and are not limited)."""
    source, token = await store.create_source(session, body)
    await session.commit()
    return _public(source, token)


@router.get("", response_model=list[SourcePublic], summary="List source services")
async def list_sources(session: SessionDep, _: OperatorDep):
    """Every source, oldest first; never a token."""
    return [_public(source) for source in await store.sources(session)]


@router.get("/{source_id}", response_model=SourcePublic, summary="Get a source service")
async def get_source(source_id: str, session: SessionDep, _: OperatorDep):
    """One source, without its token."""
    return _public(await store.find_source(session, source_id))


@router.patch("/{source_id}", response_model=SourcePublic, summary="Change a source service")
async def update_source(source_id: str, body: SourceUpdate, session: SessionDep, _: OperatorDep):
    """Changes what is sent of `name`, `topics`, `company_ids` (null: any company) and `enabled`. A disabled
    source's tokens are refused (403) from the next request on, on every ingest replica."""
    source = await store.update_source(session, source_id, body)
    await session.commit()
    return _public(source)


@router.delete("/{source_id}", status_code=204, summary="Delete a source service")
async def delete_source(source_id: str, session: SessionDep, _: OperatorDep):
    """Its tokens are refused (401) from the next request on, on every ingest replica."""
    await store.delete_source(session, source_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/{source_id}/rotate-token", response_model=SourcePublic, summary="Rotate a source's token",
             description="A new token, shown once. The previous one keeps working for `overlap_seconds` (1 s to 30 "
                         "days), then is refused (401); `previous_token_expires_at` says until when. "
                         "`overlap_seconds: 0` (the default) refuses it at once: the way to revoke a leaked token.")
async def rotate_token(source_id: str, body: Rotation, session: SessionDep, _: OperatorDep):
    source, token = await store.rotate_source_token(session, source_id, body.overlap_seconds)
    await session.commit()
    return _public(source, token)


@router.post("/{source_id}/revoke-previous-token", response_model=SourcePublic,
             summary="End a rotation's overlap now")
async def revoke_previous_token(source_id: str, session: SessionDep, _: OperatorDep):
    """The previous token of the last rotation is refused from now on; the current one keeps working."""
    source = await store.end_source_overlap(session, source_id)
    await session.commit()
    return _public(source)
