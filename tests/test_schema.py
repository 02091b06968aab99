"""The migrations build exactly the schema the models describe, and the catalog is seeded."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import async_url
from shared.models import Base


async def test_migrations_match_the_models(stack):
    engine = create_async_engine(async_url(stack.env["EM_DATABASE_URL"]))
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await engine.dispose()
    assert differences == []


async def test_topic_catalog_is_seeded(tenant):
    # Tests add topics of their own, named Contracts-... (tests/test_event_contracts.py) or Test-...
    topics = {t["name"]: t for t in (await tenant.client.get("/v1/topics")).json()
              if not t["name"].startswith(("Contracts-", "Test-"))}
    assert set(topics) == {"SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
                           "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages", "EM-Operations"}
    assert topics["NIS-Events"]["requires_event_type"] is True
    assert {"message.sent", "message.delivered", "message.failed"} <= {
        t["name"] for t in topics["SCG-Message"]["event_types"]}
    info = (await tenant.client.get("/v1/topics/SCG-Sender ID")).json()
    assert info["service"] == "SMS and Voice Service"
    assert (await tenant.client.get("/v1/topics/Nope")).status_code == 404
