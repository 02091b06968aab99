"""What a company credential may do (issue 16). Every company route declares one scope
(services/api/deps.py: `Reader`, `Writer`, `Bulk`); a key holds a set of scopes.

- `read`: everything that only looks: lists, details, the dashboard, tracking, downloads,
  schedule previews and subscription simulations.
- `write`: every change to the company's configuration (delivery configurations, endpoints,
  subscriptions, monitored numbers, signing secrets and their reveal, test events, marking
  an event handled, API keys). `write` includes `read`: a key that may change a configuration
  may see it.
- `bulk`: actions that deliver again or touch many deliveries at once: republishing an event,
  bulk actions, subscription replays, and enabling an endpoint with `republish_failed` (which
  also needs `write`). It is apart from `write` (and includes nothing), so a
  configuration tool's key cannot flood endpoints, and a support tool's key can republish
  without changing any configuration; give a key `read` beside `bulk` to let it look too.

A company's application key (the one the operator creates and rotates) and a console link's
session hold every scope."""

from __future__ import annotations

from typing import Literal

Scope = Literal["read", "write", "bulk"]
SCOPES: tuple[str, ...] = ("read", "write", "bulk")
FULL: frozenset[str] = frozenset(SCOPES)
# What each scope brings with it, beside itself.
IMPLIES: dict[str, frozenset[str]] = {"read": frozenset(), "write": frozenset({"read"}), "bulk": frozenset()}


def effective(held) -> frozenset[str]:
    """The scopes a key may use: those it holds and what they imply."""
    return frozenset(held).union(*(IMPLIES[scope] for scope in held if scope in IMPLIES))


def grants(held, needed: str) -> bool:
    return needed in effective(held)
