"""RFC 9457 problem+json for every error a service returns.

    ProblemError            an error with an HTTP status, a title and a detail
    ├── NotFound            404 (also what another company's objects answer)
    ├── Unauthorized        401
    ├── Forbidden           403
    ├── Conflict            409
    └── InvalidInput        422, with `errors: [{"loc": [...], "msg": ...}]`
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
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred")
