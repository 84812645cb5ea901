"""A route served by DirectApp answers exactly as the same handler behind FastAPI's router."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from tokenfactory.errors import RateLimited
from tokenfactory.gateway import errors
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.direct import DirectApp, Handler
from tokenfactory.gateway.query import SingleValuedQuery
from tokenfactory.gateway.sse import EventStream


async def served(request: Request) -> Response:
    return JSONResponse({"body": (await request.body()).decode()}, headers={"x-served": "1"})


async def refused(request: Request) -> Response:
    raise RateLimited("slow down", retry_after_s=2.4)


async def invalid(request: Request) -> Response:
    oa.ChatRequest.model_validate({"model": "m", "messages": [], "bogus": 1})
    raise AssertionError("the body above is invalid")


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def broken_mid_stream(request: Request) -> Response:
    async def events() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        raise RuntimeError("a bug after the first event")

    return EventStream(events())


def app(handler: Handler, direct: bool, raise_errors: bool = False) -> TestClient:
    """An app with `handler` at POST /go, routed by FastAPI or served directly."""
    a = DirectApp() if direct else FastAPI()
    errors.install(a)
    a.add_middleware(SingleValuedQuery)
    if isinstance(a, DirectApp):
        a.post_direct("/go", handler)
    else:
        a.post("/go")(handler)
    return TestClient(a, raise_server_exceptions=raise_errors)


@pytest.mark.parametrize("handler", [served, refused, invalid, broken])
def test_a_direct_route_answers_as_the_routed_one(handler: Handler) -> None:
    answers = []
    for direct in (False, True):
        with app(handler, direct) as client:
            r = client.post("/go", content=b'{"a": 1}')
            answers.append((r.status_code, r.headers.get("retry-after"), r.json()))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("handler", [broken, broken_mid_stream])
def test_an_unexpected_error_is_logged_answered_and_raised_as_fastapi_does(
    handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the response starts: the 500 in OpenAI's shape; after: the events sent so
    far. Either way the error is logged and goes on to the server (here, the client)."""
    answers = []
    for direct in (False, True):
        caplog.clear()
        with caplog.at_level(logging.ERROR, "tokenfactory.gateway"), app(handler, direct) as c:
            r = c.post("/go")
            answers.append((r.status_code, r.content))
        assert [m for _, _, m in caplog.record_tuples] == ["unexpected error on /go"]
        assert caplog.records[0].exc_info is not None
        with app(handler, direct, raise_errors=True) as client, pytest.raises(RuntimeError):
            client.post("/go")
    assert answers[0] == answers[1]
    status, body = answers[1]
    if handler is broken:
        assert status == 500 and b'"code":"internal_error"' in body
    else:
        assert status == 200 and body == b"data: 1\n\n"


def test_a_post_with_a_query_goes_through_fastapi_and_its_checks() -> None:
    with app(served, direct=True) as client:
        twice = client.post("/go?a=1&a=2", content=b"x")
        assert twice.status_code == 400 and twice.json()["error"]["param"] == "a"
        once = client.post("/go?a=1", content=b"x")
        assert once.json() == {"body": "x"} and once.headers["x-served"] == "1"


def test_other_methods_and_paths_go_on_to_fastapi() -> None:
    with app(refused, direct=True) as client:
        wrong_method = client.get("/go")
        assert wrong_method.status_code == 405
        assert set(wrong_method.json()["error"]) == {"message", "type", "param", "code"}
        assert client.post("/go/", follow_redirects=False).status_code == 307  # FastAPI's
        assert client.post("/elsewhere").json()["error"]["code"] == "not_found"
