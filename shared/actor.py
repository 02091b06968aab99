"""Who is making a request: the actor every audit record names (issue 16). In shared/ because
ingest names its source token the same way.

The api's authentication dependencies (services/api/deps.py) put one `Actor` on
`request.state.actor` and in the `current_actor` context variable, so the store layer can record
who changed a row without every function taking one more argument."""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request


@dataclass(frozen=True)
class Actor:
    # "api_key" (a company's application or API key), "console" (a console session or link),
    # "operator" (EM_ADMIN_TOKEN or an operator console session), "source" (a source token).
    kind: str
    id: str | None
    name: str | None
    company_id: str | None
    address: str | None


current_actor: ContextVar[Actor | None] = ContextVar("current_actor", default=None)


def client_address(request: Request) -> str | None:
    """The client's address (behind a trusted proxy, the one it forwards). A forwarded value that
    is not an address is kept only bounded: it lands in audit records and bucket names."""
    host = request.client.host if request.client else None
    return None if host is None else _normalized(host)


@lru_cache(maxsize=4096)  # parsing an address costs ingest 2-3% of a single-event request's CPU
def _normalized(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host[:64]


def act_as(request: Request, actor: Actor) -> Actor:
    request.state.actor = actor
    current_actor.set(actor)
    return actor
