"""Event contracts: an event type's JSON Schema (Draft 2020-12) and example, checked when an
operator sets them, and compiled once for ingest, which validates `data` on its hot path.

Bounds, so that no schema can stall ingest or the api:
- a schema is at most `MAX_SCHEMA_BYTES` as JSON and `MAX_SCHEMA_DEPTH` levels deep;
- `$ref` may only point inside the schema (`#...`): nothing is ever fetched;
- `pattern` and `patternProperties` are compiled by `jsonschema_rs` with the Rust `regex`
  engine (`RegexOptions`): matching is linear in the input, never backtracking, so `(a+)+$`
  costs what `a+$` costs; constructs that need backtracking (look-around, back-references) are
  refused, and a regex is at most `MAX_PATTERN_LENGTH` characters;
- `format` is an annotation only (the Draft 2020-12 default), as are unknown keywords.

The compiled validators are cached per (topic, event type, schema digest): a changed schema
has another digest and is compiled on the catalog load that first sees it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import jsonschema
import jsonschema_rs
import orjson
from pydantic import AfterValidator, Field

MAX_SCHEMA_BYTES = 65536
MAX_SCHEMA_DEPTH = 32
MAX_PATTERN_LENGTH = 1000
MAX_EXPANDED_NODES = 10_000  # subschemas one validation may visit, $refs followed
MAX_REPORTED = 10  # violations named per event
MODES = ("off", "warn", "enforce")
REF_KEYWORDS = ("$ref", "$dynamicRef")


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def _walk(schema: Any, path: tuple = ()) -> Iterator[tuple[tuple, str, Any]]:
    """(path, key, value) of every member of every object in the schema."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield path, key, value
            yield from _walk(value, (*path, key))
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _walk(value, (*path, index))


def _keyword_problems(schema: dict) -> list[tuple[list, str]]:
    """External references and over-long regular expressions, with their path in the schema."""
    problems: list[tuple[list, str]] = []
    for path, key, value in _walk(schema):
        if key in REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
            problems.append(([*path, key], "only references inside the schema (#...) are allowed, "
                                           f"not {value[:100]!r}"))
        elif key == "pattern" and isinstance(value, str) and len(value) > MAX_PATTERN_LENGTH:
            problems.append(([*path, key], f"a pattern may have at most {MAX_PATTERN_LENGTH} characters"))
        elif key == "patternProperties" and isinstance(value, dict):
            problems += [([*path, key, name], f"a pattern may have at most {MAX_PATTERN_LENGTH} characters")
                         for name in value if len(name) > MAX_PATTERN_LENGTH]
    return problems


def _expanded_nodes(schema: dict) -> int:
    """How many subschemas a validation may visit with every local `$ref` followed (each
    target counted once and reused; a reference back into its own chain, recursion, counts once)."""
    sizes: dict[str, int] = {}

    def count(node: Any, chain: frozenset) -> int:
        if isinstance(node, list):
            return sum(count(item, chain) for item in node)
        if not isinstance(node, dict):
            return 0
        total = 1
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                if value not in chain:
                    if value not in sizes:
                        sizes[value] = count(_local_target(schema, value), chain | {value})
                    total += sizes[value]
            elif key not in _NOT_SUBSCHEMAS:
                total += count(value, chain)
        return total

    return count(schema, frozenset())


# Keywords whose values are data, or definitions counted only where they are referenced.
_NOT_SUBSCHEMAS = frozenset({"$defs", "definitions", "const", "enum", "examples", "default"})


def _local_target(schema: dict, reference: str) -> Any:
    """What a local JSON-pointer reference (`#/$defs/x`) points at, or None."""
    if not reference.startswith("#/") and reference != "#":
        return None
    node: Any = schema
    for part in reference[2:].split("/") if reference != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def compile_schema(schema: dict) -> jsonschema_rs.Validator:
    """A compiled Draft 2020-12 validator: linear-time regexes, no retrieval, formats not asserted."""
    return jsonschema_rs.Draft202012Validator(schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True)


def schema_problems(schema: Any) -> list[tuple[list, str]]:
    """What is wrong with a schema an operator sets, as (path within the schema, message); empty
    when it is a valid Draft 2020-12 schema within the bounds."""
    if not isinstance(schema, dict):
        return [([], "a schema for data must be a JSON object")]
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        return [([], f"the schema is {size} bytes as JSON; at most {MAX_SCHEMA_BYTES} are allowed")]
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return [([], f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")]
    problems = [([*error.absolute_path], f"not a valid JSON Schema (Draft 2020-12): {error.message[:300]}")
                for error in jsonschema.Draft202012Validator(
                    jsonschema.Draft202012Validator.META_SCHEMA).iter_errors(schema)]
    problems += _keyword_problems(schema)
    if not problems and _expanded_nodes(schema) > MAX_EXPANDED_NODES:
        # Size and depth do not bound the work: `$ref`s to `$ref`s double it at each level.
        problems.append(([], f"the schema expands to more than {MAX_EXPANDED_NODES} subschemas once its $refs are "
                             "followed; validating against it would cost too much"))
    if problems:
        return problems[:MAX_REPORTED]
    try:
        compile_schema(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return [([], f"the schema cannot be compiled: {str(exc).splitlines()[0][:300]}")]
    return []


def violations(validator: jsonschema_rs.Validator, data: Any) -> list[tuple[list, str]]:
    """Where `data` breaks the schema: (JSON path within data, message), at most MAX_REPORTED.
    The message names the failing keyword, never the value (data may be personal)."""
    found = []
    for error in validator.iter_errors(data):
        found.append(([*error.instance_path], _describe(error)))
        if len(found) >= MAX_REPORTED:
            break
    return found


def first_violation(validator: jsonschema_rs.Validator, data: Any) -> tuple[list, str] | None:
    """The first place `data` breaks the schema, or None: a few microseconds, where listing every
    violation (`violations`) costs tens."""
    try:
        validator.validate(data)
    except jsonschema_rs.ValidationError as error:
        return [*error.instance_path], _describe(error)
    return None


def _describe(error: jsonschema_rs.ValidationError) -> str:
    keyword = next((part for part in reversed(error.schema_path) if isinstance(part, str)), "schema")
    detail = {key: value for key, value in _kind_detail(error.kind).items() if key not in ("instance", "value")}
    suffix = f" ({', '.join(f'{k}: {v}' for k, v in detail.items())})" if detail else ""
    return f"does not satisfy the event type's schema: {keyword}{suffix}"[:300]


def _kind_detail(kind: Any) -> dict:
    """The schema-side facts of an error kind (expected type, limit, missing property...)."""
    detail = {}
    for name in ("types", "limit", "property", "expected_value", "pattern", "options", "unexpected"):
        value = getattr(kind, name, None)
        if value is not None and len(str(value)) <= 200:
            detail[name] = value
    return detail


def digest(schema: dict) -> str:
    """A stable version of a schema: equal content, equal digest."""
    return hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class ValidatorCache:
    """Compiled validators by (topic, event type, schema digest). `refresh` is given the whole
    catalog's schemas at each catalog load: unchanged ones keep their compiled validator, changed
    ones are compiled anew, removed ones are dropped. A stored schema that no longer compiles (set
    before a bound was introduced, say) validates nothing rather than stalling ingest."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], jsonschema_rs.Validator | None] = {}
        self.current: dict[tuple[str, str], jsonschema_rs.Validator] = {}

    def refresh(self, schemas: dict[tuple[str, str], dict]) -> None:
        by_key, current = {}, {}
        for (topic, event_type), schema in schemas.items():
            key = (topic, event_type, digest(schema))
            if key in self._by_key:
                compiled = self._by_key[key]
            else:
                compiled = None if schema_problems(schema) else compile_schema(schema)
            by_key[key] = compiled
            if compiled is not None:
                current[(topic, event_type)] = compiled
        self._by_key, self.current = by_key, current

    def get(self, topic: str, event_type: str) -> jsonschema_rs.Validator | None:
        return self.current.get((topic, event_type))


def checked_schema(schema: dict | None) -> dict | None:
    """A pydantic check: the schema, or a ValueError naming the first problem and where it is."""
    if schema is None:
        return None
    problems = schema_problems(schema)
    if problems:
        path, message = problems[0]
        raise ValueError(message + (f" (at {'/'.join(map(str, path))})" if path else ""))
    return schema


ContractSchema = Annotated[
    dict[str, Any] | None,
    AfterValidator(checked_schema),
    Field(description=f"A JSON Schema (Draft 2020-12) for the event's `data`: at most {MAX_SCHEMA_BYTES} bytes, "
          f"{MAX_SCHEMA_DEPTH} levels, regexes of {MAX_PATTERN_LENGTH} characters without look-around or "
          "back-references, references only within the schema"),
]
Mode = Literal["off", "warn", "enforce"]
