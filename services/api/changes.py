"""Tell every matcher and dispatcher replica that a company's configuration changed."""

from fastapi import Request

from shared.kafka import publish_change
from shared.messages import ChangeKind


async def announce(request: Request, kind: ChangeKind, company_id: str) -> None:
    await publish_change(request.app.state.producer, request.app.state.settings, kind, company_id)
