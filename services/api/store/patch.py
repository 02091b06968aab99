"""PATCH semantics, once for every resource: a field the caller left out keeps its value, a
field sent is replaced whole.

The update models (services/api/schemas.py) refuse `null` with a 422 where a resource cannot be
without the value, so a None that reaches `merge_patch` always means "remove". Nested objects
(endpoints, a schedule, authentication with its secrets) are replaced whole, with their own
defaults filled in: to keep a stored secret, leave its object out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def merge_patch(current: dict[str, Any], patch: BaseModel) -> dict[str, Any]:
    """`current` (the resource's values, by field name) with the fields sent in `patch` replaced."""
    sent = patch.model_dump(include=patch.model_fields_set)
    unknown = sent.keys() - current.keys()
    if unknown:  # a programming error: the update model has a field the resource does not
        raise KeyError(f"{type(patch).__name__} sets fields the resource does not have: {sorted(unknown)}")
    return {**current, **sent}
