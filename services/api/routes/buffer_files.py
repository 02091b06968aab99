"""Event buffer files: the JSON files scheduled delivery writes, and their download."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from services.api.deps import CompanyDep, SessionDep, SettingsDep
from services.api.pagination import decode_cursor, encode_cursor
from shared.errors import NotFound
from shared.models import BufferFile

router = APIRouter(prefix="/v1/buffer-files", tags=["buffer files"])


class BufferFilePublic(BaseModel):
    id: str
    delivery_configuration_id: str
    window_start: datetime | None
    window_end: datetime
    status: str
    event_count: int
    size_bytes: int
    url: str | None
    error: str | None
    created_at: datetime


class BufferFilePage(BaseModel):
    data: list[BufferFilePublic]
    next_cursor: str | None


def public(row: BufferFile, base_url: str) -> BufferFilePublic:
    return BufferFilePublic(
        id=row.id, delivery_configuration_id=row.delivery_configuration_id, window_start=row.window_start,
        window_end=row.window_end, status=row.status, event_count=row.event_count, size_bytes=row.size_bytes,
        url=f"{base_url}/v1/buffer-files/{row.id}/download" if row.status == "stored" else None,
        error=row.error, created_at=row.created_at,
    )


@router.get("", response_model=BufferFilePage, summary="List buffer files",
            description="Newest window first. `status`: `writing`, `stored`, `failed`, or `empty` (a window "
                        "without events: recorded, but no file is written).")
async def list_files(session: SessionDep, caller: CompanyDep, settings: SettingsDep,
                     delivery_configuration_id: str | None = None,
                     status: Literal["writing", "stored", "failed", "empty"] | None = None,
                     limit: int = Query(50, ge=1, le=500), cursor: str | None = None):
    query = select(BufferFile).where(BufferFile.company_id == caller.company_id)
    if delivery_configuration_id:
        query = query.where(BufferFile.delivery_configuration_id == delivery_configuration_id)
    if status:
        query = query.where(BufferFile.status == status)
    if cursor:
        query = query.where(BufferFile.id < decode_cursor(cursor, "buffer-files")[0])
    rows = (await session.scalars(query.order_by(BufferFile.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return BufferFilePage(data=[public(r, settings.api_base_url) for r in rows],
                          next_cursor=encode_cursor("buffer-files", rows[-1].id) if more else None)


async def _owned(session, company_id: str, file_id: str) -> BufferFile:
    row = await session.get(BufferFile, file_id)
    if row is None or row.company_id != company_id:
        raise NotFound(f"buffer file {file_id} does not exist")
    return row


@router.get("/{file_id}", response_model=BufferFilePublic, summary="Get a buffer file's status")
async def get_file(file_id: str, session: SessionDep, caller: CompanyDep, settings: SettingsDep):
    """One buffer file: its window, status, event count, size and download URL."""
    return public(await _owned(session, caller.company_id, file_id), settings.api_base_url)


@router.get("/{file_id}/download", summary="Download a buffer file",
            description="Streams the JSON file. With S3 storage, `?redirect=true` answers 307 to a presigned URL.",
            response_class=StreamingResponse)
async def download(file_id: str, request: Request, session: SessionDep, caller: CompanyDep,
                   redirect: bool = False):
    row = await _owned(session, caller.company_id, file_id)
    if row.status != "stored" or not row.object_key:
        raise NotFound(f"buffer file {file_id} has no stored file (status {row.status})")
    media = request.app.state.media
    if redirect:
        url = await media.presigned_url(row.object_key)
        if url:
            return StreamingResponse(iter(()), status_code=307, headers={"location": url})
    return StreamingResponse(
        media.stream(row.object_key), media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{file_id}.json"',
                 "content-length": str(row.size_bytes)},
    )
