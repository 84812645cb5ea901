"""A route served by DirectRoutes answers exactly as the same handler behind FastAPI's router."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from tokenfactory.errors import RateLimited
from tokenfactory.gateway import errors
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.direct import DirectRoutes


async def served(request: Request) -> Response:
    return JSONResponse({"body": (await request.body()).decode()}, headers={"x-served": "1"})


async def refused(request: Request) -> Response:
    raise RateLimited("slow down", retry_after_s=2.4)


async def invalid(request: Request) -> Response:
    oa.ChatRequest.model_validate({"model": "m", "messages": [], "bogus": 1})
    raise AssertionError("the body above is invalid")


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


def app(handler: Callable[[Request], object], direct: bool) -> TestClient:
    """An app with `handler` at POST /go, routed by FastAPI or served directly."""
    a = FastAPI()
    errors.install(a)
    a.post("/go")(handler)
    if direct:
        a.add_middleware(DirectRoutes, routes={"/go": handler})
    return TestClient(a, raise_server_exceptions=False)


@pytest.mark.parametrize("handler", [served, refused, invalid, broken])
def test_a_direct_route_answers_as_the_routed_one(handler: Callable[[Request], object]) -> None:
    answers = []
    for direct in (False, True):
        with app(handler, direct) as client:
            r = client.post("/go", content=b'{"a": 1}')
            answers.append((r.status_code, r.headers.get("retry-after"), r.json()))
    assert answers[0] == answers[1]


def test_other_methods_and_paths_go_on_to_fastapi() -> None:
    with app(refused, direct=True) as client:
        wrong_method = client.get("/go")
        assert wrong_method.status_code == 405
        assert set(wrong_method.json()["error"]) == {"message", "type", "param", "code"}
        assert client.post("/go/", follow_redirects=False).status_code == 307  # FastAPI's
        assert client.post("/elsewhere").json()["error"]["code"] == "not_found"
