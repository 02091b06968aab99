"""Media storage on S3 (shared/media.py), against a real S3-protocol server: moto's standalone
server on a free port. The scheduler writes a window's buffer file into the bucket, an api replica
configured for S3 streams it back, and `?redirect=true` answers 307 to a presigned URL that
serves the same bytes. obstore reads the endpoint and credentials from the AWS_* variables, as
it does in docker compose (MinIO) and on AWS."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import timedelta

import httpx
import orjson
import pytest
from moto.server import ThreadedMotoServer

from services.devstack import ServiceProcess, free_port, wait_for_ready
from services.scheduler.windows import WindowRunner
from shared.db import create_pool
from shared.kafka import Topics, make_producer
from shared.media import MediaStore
from shared.settings import Settings
from tests.test_scheduled_delivery import buffered_events, files_of

BUCKET = "em-media"


class S3:
    def __init__(self, port: int):
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "em-test",
                    "AWS_SECRET_ACCESS_KEY": "em-test-secret", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                    "EM_MEDIA_URL": f"s3://{BUCKET}"}

    async def keys(self) -> list[str]:
        async with httpx.AsyncClient() as client:
            listing = await client.get(f"{self.endpoint}/{BUCKET}", params={"list-type": "2"})
        assert listing.status_code == 200, listing.text
        return re.findall(r"<Key>([^<]+)</Key>", listing.text)


@pytest.fixture(scope="module")
def s3():
    """The server, its bucket, and its variables set in this process too (for the in-process
    scheduler's MediaStore)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3(port)
    assert httpx.put(f"{s3.endpoint}/{BUCKET}").status_code == 200, "bucket created"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3.env.items():
            patch.setenv(key, value)
        yield s3
    server.stop()


@pytest.fixture
async def s3_runner(stack, s3):
    """The scheduler's window runner writing into the bucket, against the session's database and broker."""
    settings = Settings(**{k[3:].lower(): v for k, v in {**stack.env, **s3.env}.items()
                           if k.startswith("EM_") and k[3:].lower() in Settings.model_fields})
    pool = await create_pool(settings.database_url, size=2)
    producer = make_producer(settings)
    await producer.start()
    yield WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)
    await producer.stop()
    await pool.close()


@pytest.fixture
async def s3_api(stack, s3):
    """An api replica whose media storage is the bucket."""
    port = free_port()
    process = ServiceProcess("api", {**stack.env, **s3.env, "EM_API_PORT": str(port)},
                             stack.data_dir / "logs" / f"api-s3-{port}.log")
    process.start()
    try:
        await asyncio.to_thread(wait_for_ready, port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(process.stop)


async def test_a_buffer_file_goes_to_s3_streams_through_the_api_and_redirects_to_a_presigned_url(
        stack, tenant, source, s3, s3_runner, s3_api):
    configuration, ids, first_fire = await buffered_events(tenant, source, 3, data={"text": "kept in s3"})
    await s3_runner.run_due_windows(first_fire + timedelta(minutes=1))
    [row] = await files_of(tenant, configuration)
    assert row["status"] == "stored" and row["event_count"] == 3, row
    [key] = [k for k in await s3.keys() if row["id"] in k]  # uploaded into the bucket, not the local folder
    assert not any(row["id"] in path.name for path in (stack.data_dir / "media").rglob("*"))

    headers = {"authorization": tenant.client.headers["authorization"]}
    async with httpx.AsyncClient(base_url=s3_api, headers=headers, timeout=30) as api:
        async with api.stream("GET", f"/v1/buffer-files/{row['id']}/download") as download:
            assert download.status_code == 200
            body = b"".join([chunk async for chunk in download.aiter_bytes()])
        assert len(body) == row["size_bytes"] == int(download.headers["content-length"])
        document = orjson.loads(body)
        assert sorted(event["id"] for event in document["events"]) == sorted(ids)
        assert document["events"][0]["data"] == {"text": "kept in s3"}

        redirect = await api.get(f"/v1/buffer-files/{row['id']}/download", params={"redirect": "true"})
        assert redirect.status_code == 307, redirect.text
        location = redirect.headers["location"]
        assert location.startswith(f"{s3.endpoint}/{BUCKET}/{key}?") and "X-Amz-Signature=" in location

        other = await api.get(f"/v1/buffer-files/{row['id']}/download", params={"redirect": "true"},
                              headers={"authorization": "Bearer not-a-key"})
        assert other.status_code == 401, "the presigned URL is given only to the file's company"

    async with httpx.AsyncClient() as anonymous:  # no credentials: the signature in the URL is the permission
        presigned = await anonymous.get(location)
    assert presigned.status_code == 200 and presigned.content == body


async def test_a_large_object_goes_up_in_parts_and_streams_back_in_chunks(s3):
    media = MediaStore(Settings(media_url=f"s3://{BUCKET}"))
    part = os.urandom(1024) * (6 * 1024)  # 6 MiB: obstore uploads in parts past 5 MiB
    key = f"large/{os.urandom(4).hex()}.json"
    async with media.writer(key) as writer:
        for _ in range(3):
            await writer.write(part)

    async with httpx.AsyncClient() as client:
        head = await client.head(f"{s3.endpoint}/{BUCKET}/{key}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == 3 * len(part)
    assert re.fullmatch(r'"[0-9a-f]{32}-\d+"', head.headers["etag"]), "a multipart upload's ETag"
    chunks = [chunk async for chunk in media.stream(key)]
    assert len(chunks) > 1 and b"".join(chunks) == part * 3
