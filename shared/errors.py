"""RFC 9457 problem+json for every error a service returns.

    ProblemError            an error with an HTTP status, a title and a detail
    ├── NotFound            404 (also what another company's objects answer)
    ├── Unauthorized        401
    ├── Forbidden           403
    ├── Conflict            409
    ├── ContentTooLarge     413
    ├── InvalidInput        422, with `errors: [{"loc": [...], "msg": ...}]`
    └── Unavailable         503 (a dependency refused; nothing is known to have happened)

Every operation's OpenAPI entry documents these answers (`document_problems`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class ProblemError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class NotFound(ProblemError):
    status, title = 404, "Not Found"


class Unauthorized(ProblemError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str = "missing or invalid credentials"):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ProblemError):
    status, title = 403, "Forbidden"


class Conflict(ProblemError):
    status, title = 409, "Conflict"


class ContentTooLarge(ProblemError):
    status, title = 413, "Content Too Large"


class TooManyRequests(ProblemError):
    status, title = 429, "Too Many Requests"


class Unavailable(ProblemError):
    status, title = 503, "Service Unavailable"


class InvalidInput(ProblemError):
    status, title = 422, "Unprocessable Content"

    @classmethod
    def at(cls, loc: list, msg: str) -> InvalidInput:
        return cls(msg, errors=[{"loc": loc, "msg": msg}])


def problem_response(status: int, title: str, detail: str, errors=None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _clean_loc(loc) -> list:
    return [part for part in loc if part != "body"] or ["body"]


def validation_errors(errors) -> list[dict[str, Any]]:
    return [{"loc": _clean_loc(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in errors]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError):
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        errors = validation_errors(exc.errors())
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(422, "Unprocessable Content", detail or "invalid request", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return problem_response(exc.status_code, title, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if _unavailable(exc):
            log.warning("%s %s: database or broker unavailable: %s", request.method, request.url.path, exc)
            return problem_response(503, "Service Unavailable", "the database or the broker is unavailable; "
                                    "nothing was changed, try again shortly", headers={"Retry-After": "5"})
        if (race := _concurrent_change(exc)) is not None:
            log.info("%s %s: %s", request.method, request.url.path, race.detail)
            return problem_response(race.status, race.title, race.detail, headers=race.headers)
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred")


def _concurrent_change(exc: BaseException) -> ProblemError | None:
    """A request that lost a race with another one on the same objects: the object was deleted
    meanwhile (404), or the transactions deadlocked or could not be serialised (409, retry).
    The request's transaction was rolled back, so nothing of it was changed."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InvalidRequestError
    from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

    if isinstance(exc, StaleDataError | ObjectDeletedError) or (
            isinstance(exc, InvalidRequestError) and "Could not refresh instance" in str(exc)):
        return NotFound("it was deleted by another request meanwhile; nothing was changed")
    cause = exc.orig.__cause__ if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(cause, asyncpg.ForeignKeyViolationError):
        return Conflict("it refers to something deleted by another request meanwhile; nothing was changed")
    if isinstance(cause, asyncpg.exceptions.TransactionRollbackError):  # deadlock, serialization failure
        return Conflict("another request changed the same objects at the same time; nothing was changed, "
                        "try again", headers={"Retry-After": "1"})
    return None


def _unavailable(exc: BaseException) -> bool:
    """The database or broker is down, as raised by asyncpg, aiokafka or SQLAlchemy (which wraps
    the driver's error): a 503 the client may retry, not a 500."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from shared.deadletter import is_unavailable

    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes, not forever
        if seen is None:
            break
        if is_unavailable(seen) or isinstance(seen, PoolTimeout):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["loc", "msg"],
            "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                           "msg": {"type": "string"}},
        }},
    },
}
PROBLEMS = {401: "Missing or invalid credentials", 403: "Not allowed", 404: "No such object (or another company's)",
            409: "Conflicts with what exists", 413: "Request body too large",
            415: "The body is not JSON", 422: "Invalid input; `errors` names each field",
            503: "The database or the broker is unavailable; retry after `Retry-After` seconds"}
BODY_ONLY = {413, 415}


def document_problems(openapi: dict) -> dict:
    """Every /v1 operation takes a bearer token and may answer the problems above (413 and 415
    only where a body is sent), all as problem+json; FastAPI's own 422 shape is replaced, since
    ours is a problem too."""
    openapi.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    openapi["components"]["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "A company's API key; the operator token under /v1/admin; a source token at ingest"}}
    openapi["components"]["schemas"].pop("HTTPValidationError", None)
    openapi["components"]["schemas"].pop("ValidationError", None)
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in openapi.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            operation.setdefault("security", [{"bearer": []}])
            responses = operation.setdefault("responses", {})
            for status, description in PROBLEMS.items():
                if status in BODY_ONLY and method not in ("post", "put", "patch", "delete"):
                    continue
                existing = responses.get(str(status), {})
                responses[str(status)] = {"description": existing.get("description", description), "content": content}
    return openapi
