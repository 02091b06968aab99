"""Media storage (where buffer files go) through obstore: `file://`, `s3://`, `gs://`, `az://`
URLs from `EM_MEDIA_URL`, or a folder under the data dir when it is unset."""

from __future__ import annotations

from datetime import timedelta

import obstore
from obstore.store import from_url

from shared.settings import Settings


class MediaStore:
    def __init__(self, settings: Settings):
        url = settings.media_url or (settings.data_dir.resolve() / "media").as_uri()
        self.url = url
        self.is_s3 = url.startswith("s3://")
        self.store = from_url(url, mkdir=True) if url.startswith("file://") else from_url(url)

    def writer(self, key: str):
        """An async context manager with `write(bytes)`: uploaded in parts, never whole in memory."""
        return obstore.open_writer_async(self.store, key)

    async def stream(self, key: str):
        result = await obstore.get_async(self.store, key)
        async for chunk in result.stream(min_chunk_size=256 * 1024):
            yield bytes(chunk)

    async def presigned_url(self, key: str, valid_for: timedelta = timedelta(hours=1)) -> str | None:
        if not self.is_s3:
            return None
        return await obstore.sign_async(self.store, "GET", key, valid_for)
