"""Buffer files: the JSON files scheduled delivery writes (rows written by the scheduler; the api
only reads them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.store import fetch_page, find_owned
from shared.models import BufferFile
from shared.statuses import BufferFileStatus


async def find(session: AsyncSession, company_id: str, buffer_file_id: str) -> BufferFile:
    return await find_owned(session, BufferFile, company_id, buffer_file_id, "buffer file")


async def page(session: AsyncSession, company_id: str, delivery_configuration_id: str | None,
               status: BufferFileStatus | None, after: str | None, limit: int) -> tuple[list[BufferFile], bool]:
    """Newest window first (ids sort by creation), after the id `after`; and whether more follow."""
    query = select(BufferFile).where(BufferFile.company_id == company_id)
    if delivery_configuration_id:
        query = query.where(BufferFile.delivery_configuration_id == delivery_configuration_id)
    if status:
        query = query.where(BufferFile.status == status)
    if after:
        query = query.where(BufferFile.id < after)
    return await fetch_page(session, query.order_by(BufferFile.id.desc()), limit)
