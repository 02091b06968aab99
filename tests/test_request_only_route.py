"""RequestOnlyRoute (shared/service.py): the hot route that skips FastAPI's per-request
dependency solving still runs every dependency it would have run, app-wide, router-wide and
overridden ones, and refuses at start-up what it could not call with the request alone."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response

from shared.service import RequestOnlyRoute


async def endpoint(request: Request) -> Response:
    return Response(b"sent", status_code=202)


async def refuse(request: Request) -> None:
    raise HTTPException(403, "refused by a dependency")


async def allow(request: Request) -> None:
    return None


async def answer(app: FastAPI, path: str = "/x") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.post(path)


async def test_app_wide_router_wide_and_overridden_dependencies_apply():
    app = FastAPI(dependencies=[Depends(allow)])
    app.router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=RequestOnlyRoute)
    assert (await answer(app)).status_code == 202

    app = FastAPI(dependencies=[Depends(refuse)])
    app.router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=RequestOnlyRoute)
    assert (await answer(app)).status_code == 403

    router = APIRouter(dependencies=[Depends(refuse)], route_class=RequestOnlyRoute)
    router.add_api_route("/x", endpoint, methods=["POST"])
    app = FastAPI()
    app.include_router(router, prefix="/included")
    assert (await answer(app, "/included/x")).status_code == 403

    app.dependency_overrides[refuse] = allow
    assert (await answer(app, "/included/x")).status_code == 202


async def takes_a_query(request: Request, page: int = 1) -> Response:
    return Response()


def not_a_coroutine(request: Request) -> Response:
    return Response()


async def takes_a_dependency(request: Request, user: None = Depends(allow)) -> Response:
    return Response()


async def needs_a_dependency(request: Request, inner: None = Depends(allow)) -> None:
    return None


@pytest.mark.parametrize("route_endpoint, dependencies", [
    (takes_a_query, []), (not_a_coroutine, []), (takes_a_dependency, []), (endpoint, [Depends(needs_a_dependency)]),
])
def test_anything_but_the_request_is_refused_at_start_up(route_endpoint, dependencies):
    with pytest.raises(TypeError, match="must be a coroutine function taking the Request alone"):
        FastAPI(dependencies=dependencies).router.add_api_route(
            "/x", route_endpoint, methods=["POST"], route_class_override=RequestOnlyRoute)
