"""What every request must satisfy before any route sees it, in one place for api and ingest.

- Strings (values and keys at any depth of a JSON body, query and path parameters) hold no NUL
  and no lone surrogate: PostgreSQL refuses NUL in text and jsonb, and a lone surrogate cannot be
  encoded as UTF-8, so either would be accepted here and fail later in a worker.
- A JSON body nests at most `EM_MAX_JSON_DEPTH` levels (orjson reads 1024 but writes only 254,
  so deeper data could be accepted and then never encoded again).
- A body is at most `EM_<SERVICE>_MAX_BODY_BYTES`, refused with 413 before it is buffered whole.
- Datetimes are aware and within [1970-01-01, 2200-01-01): what PostgreSQL and Python both hold
  (`0001-01-01` would be stored as `-infinity`). Naive datetimes are refused, not guessed as UTC.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator

from shared.errors import InvalidInput, problem_response
from shared.messages import EARLIEST, LATEST

MOMENT_RANGE = "between 1970-01-01 and 2200-01-01"
# Bodies larger than this are parsed and checked in a worker thread (a 16 MiB body takes a
# good fraction of a second), so one large request does not hold up every other request.
PARSE_IN_THREAD_BYTES = 256 * 1024
MAX_REPORTED = 20  # problems listed in one answer; enough to fix a batch, short enough to read


# --- strings ---------------------------------------------------------------------------------


def string_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None."""
    if "\x00" in value:
        return "NUL characters (\\u0000) are not accepted"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "lone surrogates (\\ud800-\\udfff without their pair) are not accepted"
    return None


def json_problems(document: Any, max_depth: int) -> list[dict]:
    """Every bad string (key or value) and the first place nesting exceeds `max_depth`, as
    `{"loc", "msg"}` items with the JSON path (list indexes as ints). One shared path is pushed
    and popped on the way, so a large body costs one visit per node, not a path per node."""
    problems: list[dict] = []
    path: list = []
    too_deep = False

    def visit(value: Any, depth: int) -> None:
        nonlocal too_deep
        kind = type(value)
        if kind is str:
            if reason := string_problem(value):
                problems.append({"loc": list(path) or ["body"], "msg": reason})
            return
        if kind is not dict and kind is not list:
            return
        if depth >= max_depth:
            if not too_deep:
                problems.append({"loc": list(path), "msg": f"nested deeper than {max_depth} levels"})
                too_deep = True
            return
        for key, item in value.items() if kind is dict else enumerate(value):
            if len(problems) >= MAX_REPORTED:
                return
            if type(key) is str and (reason := string_problem(key)):  # named with the bad character escaped
                problems.append({"loc": [*path, key.encode("unicode_escape").decode("ascii")], "msg": f"key: {reason}"})
                continue
            path.append(key)
            visit(item, depth + 1)
            path.pop()

    visit(document, 0)  # recursion is bounded by max_depth
    return problems


def parse_json_body(raw: bytes, max_depth: int) -> Any:
    """The body decoded, or InvalidInput naming each bad string and the depth limit. orjson is
    strict (no NaN, no lone surrogates, at most 1024 levels); when it refuses a body, the lenient
    standard parser locates the surrogates so the answer can name their path."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            lenient = json.loads(raw)
        except (ValueError, RecursionError):
            lenient = None
        problems = json_problems(lenient, max_depth) if lenient is not None else []
        if problems:
            raise InvalidInput(_summary(problems), problems) from None
        raise InvalidInput.at(["body"], f"malformed JSON: {exc}") from None
    # orjson refuses lone surrogates and raw control characters, so a NUL can only come from a
    # `\u0000` escape: without one, only the depth needs checking (and only with enough brackets).
    if b"\\u0000" not in raw and (raw.count(b"[") + raw.count(b"{") <= max_depth
                                   or not isinstance(document, dict | list)
                                   or not _deeper_than(document, max_depth)):
        return document
    if problems := json_problems(document, max_depth):
        raise InvalidInput(_summary(problems), problems)
    return document


def _deeper_than(container: dict | list, levels: int) -> bool:
    if levels == 0:
        return True
    for child in container.values() if type(container) is dict else container:
        if (type(child) is dict or type(child) is list) and _deeper_than(child, levels - 1):
            return True
    return False


def _summary(problems: list[dict]) -> str:
    return "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:5])


async def check_parameters(request: Request) -> None:
    """App-wide dependency: query and path parameters hold only storable strings, and every query
    parameter is one the route takes (a misspelt filter is an error, not a silently wider search)."""
    for where, items in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
        for name, value in items:
            if isinstance(value, str) and (reason := string_problem(value)):
                raise InvalidInput.at([where, name], reason)
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and request.query_params:
        known, many = _query_parameters(route)
        for name in request.query_params:
            if name not in known:
                takes = ", ".join(sorted(known)) or "none"
                raise InvalidInput.at(["query", name], f"unknown query parameter; this route takes: {takes}")
            if name not in many and len(request.query_params.getlist(name)) > 1:
                # Otherwise one of the values would be used and the others silently dropped.
                raise InvalidInput.at(["query", name], "given more than once; this parameter takes one value")


_QUERY_PARAMETERS: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _query_parameters(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters a route and its dependencies declare (a pydantic model declared as
    query parameters contributes its fields), and those of them that take a list. Routes live as
    long as the app: worked out once per route."""
    found = _QUERY_PARAMETERS.get(id(route))
    if found is None:
        names: dict[str, Any] = {}
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            for field in dependant.query_params:
                model = field.field_info.annotation
                if isinstance(model, type) and issubclass(model, BaseModel):
                    names.update({info.alias or name: info.annotation for name, info in model.model_fields.items()})
                else:
                    names[field.alias] = model
            pending.extend(dependant.dependencies)
        many = frozenset(name for name, annotation in names.items() if _takes_many(annotation))
        found = _QUERY_PARAMETERS[id(route)] = (frozenset(names), many)
    return found


def _takes_many(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return origin in (Union, UnionType, Annotated) and any(_takes_many(arg) for arg in get_args(annotation))


# --- datetimes -------------------------------------------------------------------------------


def bounded(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be {MOMENT_RANGE}")
    return moment


def iso_8601(value: Any) -> Any:
    """pydantic would read a number (or a numeric string, as every query parameter is) as a Unix
    timestamp; the contract says an ISO 8601 date-time, so `from=1.5e-87` is an error, not 1970."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2026-01-01T00:00:00Z")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

# An ISO 8601 date-time with an offset, within the range both PostgreSQL and Python hold.
Moment = Annotated[AwareDatetime, BeforeValidator(iso_8601), AfterValidator(bounded)]


# --- body size and JSON content at the ASGI layer ---------------------------------------------


class TooLarge(Exception):
    pass


class BodyGuard:
    """Pure ASGI middleware (Starlette's `@app.middleware("http")` runs each request in an extra
    task and cost ingest a tenth of its CPU): refuses a body over `max_bytes()` with 413
    (Content-Length checked up front, chunked bodies counted as they arrive, so an oversized body
    is never buffered whole) and a declared body that is not JSON with 415, then checks a JSON
    body's strings and depth once, for every route, and hands the route the bytes it read."""

    def __init__(self, app, max_bytes, max_depth):
        self.app = app
        self.max_bytes = max_bytes  # callables: settings are read when the service starts
        self.max_depth = max_depth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            return await self.app(scope, receive, send)
        limit = self.max_bytes()
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._too_large(scope, receive, send, limit)
        content_type = headers.get(b"content-type", b"")
        if declared not in (None, b"0") and content_type and not _is_json(content_type):
            # Without this, `curl -d '{...}'` (form-encoded by default) gets a baffling validation
            # error. A body without any Content-Type is read as JSON.
            response = problem_response(415, "Unsupported Media Type",
                                        "send the body as JSON with Content-Type: application/json")
            return await response(scope, receive, send)
        try:
            body = await _read_body(receive, limit)
        except TooLarge:
            return await self._too_large(scope, receive, send, limit)
        if body and _is_json(headers.get(b"content-type", b"")):
            try:
                if len(body) > PARSE_IN_THREAD_BYTES:  # the event loop keeps serving others meanwhile
                    document = await asyncio.to_thread(parse_json_body, body, self.max_depth())
                else:
                    document = parse_json_body(body, self.max_depth())
            except InvalidInput as exc:
                response = problem_response(exc.status, exc.title, exc.detail, exc.errors)
                return await response(scope, receive, send)
            scope.setdefault("state", {})["json_body"] = document
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _too_large(scope, receive, send, limit: int):
        # No `Connection: close`: closing while the client still sends makes its kernel drop our
        # answer (a reset); kept alive, the server discards the rest and the client reads the 413.
        response = problem_response(413, "Content Too Large", f"the request body exceeds {limit} bytes")
        await response(scope, receive, send)


async def _read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """The body once, then the client's own messages (a disconnect, when it comes)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_json(content_type: bytes) -> bool:
    # No Content-Type is read as JSON (see create_service_app's 415 rule).
    media = content_type.split(b";")[0].strip().lower()
    return not media or media == b"application/json" or media.endswith(b"+json")
