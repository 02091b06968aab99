"""The audit log (issue 16): who changed what, when and from where.

The store layer (services/api/store/*.py) calls `record` next to the change it stages, in the
same session: the route's commit writes both or neither, so a failed change leaves no record and
a change is never left unrecorded. Who comes from the request's actor (shared/actor.py).

A record holds the non-secret fields before and after (for an update, only those that changed).
Secrets never: `secret_changes` says which secret was set, changed or removed, not its value.
Rows are append-only: the database refuses UPDATE (trigger, migration 0015); retention deletes
them with the events (services/scheduler/retention.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.actor import Actor, current_actor
from shared.ids import new_id
from shared.models import AuditRecord

# A change made outside any request (a background job): no caller to name.
SYSTEM = Actor("system", None, None, None, None)
_COMPANY_OF_ACTOR = object()


def record(session: AsyncSession, action: str, resource_type: str, resource_id: str | None,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           company_id: str | None | object = _COMPANY_OF_ACTOR) -> AuditRecord:
    """Stage one record in `session`. `company_id` defaults to the actor's company; an operator's
    change to a company's object names that company, an operator-wide one (a source, a topic) None."""
    actor = current_actor.get() or SYSTEM
    row = AuditRecord(
        id=new_id("aud"), company_id=actor.company_id if company_id is _COMPANY_OF_ACTOR else company_id,
        actor_kind=actor.kind, actor_id=actor.id, actor_name=actor.name, client_address=actor.address,
        action=action, resource_type=resource_type, resource_id=resource_id,
        before=_jsonable(before), after=_jsonable(after))
    session.add(row)
    return row


def record_changes(session: AsyncSession, action: str, resource_type: str, resource_id: str | None,
                   before: dict[str, Any], after: dict[str, Any],
                   company_id: str | None | object = _COMPANY_OF_ACTOR) -> AuditRecord | None:
    """`record` of only the fields that changed, and no record at all when none did (an empty
    patch, ending an overlap there was none of): the log lists changes, not requests."""
    old, new = changed(before, after)
    if not old and not new:
        return None
    return record(session, action, resource_type, resource_id, old, new, company_id=company_id)


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields whose value differs, each side's own."""
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def secret_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, str]:
    """Which secrets a change set, changed or removed, by name: never their values."""
    result = {}
    for name in sorted({**before, **after}):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        result[name] = "set" if old is None else "removed" if new is None else "changed"
    return result


def _jsonable(value: Any) -> Any:
    """Dates and the like as their ISO text, so a snapshot goes into JSONB as it reads."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
