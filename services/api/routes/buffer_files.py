"""Event buffer files: the JSON files scheduled delivery writes, and their download."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from services.api.deps import Reader, SessionDep, SettingsDep
from services.api.pagination import decode_cursor, encode_cursor
from services.api.store import buffer_files as store
from shared.errors import NotFound
from shared.models import BufferFile
from shared.statuses import BufferFileStatus

router = APIRouter(prefix="/v1/buffer-files", tags=["buffer files"])


class BufferFilePublic(BaseModel):
    id: str
    delivery_configuration_id: str
    window_start: datetime | None
    window_end: datetime
    status: BufferFileStatus
    event_count: int
    size_bytes: int
    url: str | None
    error: str | None
    created_at: datetime


class BufferFilePage(BaseModel):
    data: list[BufferFilePublic]
    next_cursor: str | None


def present(row: BufferFile, base_url: str) -> BufferFilePublic:
    stored = row.status == BufferFileStatus.STORED
    return BufferFilePublic(
        id=row.id, delivery_configuration_id=row.delivery_configuration_id, window_start=row.window_start,
        window_end=row.window_end, status=row.status, event_count=row.event_count, size_bytes=row.size_bytes,
        url=f"{base_url}/v1/buffer-files/{row.id}/download" if stored else None,
        error=row.error, created_at=row.created_at,
    )


@router.get("", response_model=BufferFilePage, summary="List buffer files",
            description="Most recently recorded first. `status`: `writing`, `stored`, `failed`, or `empty` (a window "
                        "without events: recorded, but no file is written).")
async def list_files(session: SessionDep, caller: Reader, settings: SettingsDep,
                     delivery_configuration_id: str | None = None, status: BufferFileStatus | None = None,
                     limit: int = Query(50, ge=1, le=500), cursor: str | None = None):
    after = decode_cursor(cursor, "buffer-files")[0] if cursor else None
    rows, more = await store.page(session, caller.company_id, delivery_configuration_id, status, after, limit)
    return BufferFilePage(data=[present(r, settings.api_base_url) for r in rows],
                          next_cursor=encode_cursor("buffer-files", rows[-1].id) if more else None)


@router.get("/{file_id}", response_model=BufferFilePublic, summary="Get a buffer file's status")
async def get_file(file_id: str, session: SessionDep, caller: Reader, settings: SettingsDep):
    """One buffer file: its window, status, event count, size and download URL."""
    return present(await store.find(session, caller.company_id, file_id), settings.api_base_url)


@router.get("/{file_id}/download", summary="Download a buffer file",
            description="Streams the JSON file. With S3 storage, `?redirect=true` answers 307 to a presigned URL.",
            response_class=StreamingResponse)
async def download(file_id: str, request: Request, session: SessionDep, caller: Reader,
                   redirect: bool = False):
    row = await store.find(session, caller.company_id, file_id)
    if row.status != BufferFileStatus.STORED or not row.object_key:
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
