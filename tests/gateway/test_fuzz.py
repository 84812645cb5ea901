"""The published OpenAPI schema is true, and fuzzing every operation from it (schemathesis
over a live gateway and twin engine) gets documented, OpenAI-shaped answers, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from floor_helpers import ADMIN, Gateway, MakeGateway
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

MODEL = "llama-3.1-8b"
EXAMPLES = 12  # per operation and mode: the whole run stays well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Unknown query parameters are ignored, as HTTP APIs (OpenAI's too) do: not a defect.
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
GENERATION = ("/v1/chat/completions", "/v1/completions")


@pytest.fixture
def gw(twin: str, make_gateway: MakeGateway) -> Gateway:
    return make_gateway([twin])


def test_the_schema_is_published_and_describes_the_bodies_the_routes_read(gw: Gateway) -> None:
    spec = httpx.get(gw.url + "/openapi.json", timeout=30).json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]

    def body(path: str, media: str = "application/json") -> dict[str, Any]:
        found: dict[str, Any] = paths[path]["post"]["requestBody"]["content"][media]["schema"]
        return schemas[found["$ref"].rsplit("/", 1)[1]] if "$ref" in found else found

    chat = body("/v1/chat/completions")
    assert set(chat["required"]) == {"model", "messages"}
    assert chat["additionalProperties"] is False  # unknown parameters are refused
    assert chat["properties"]["n"]["maximum"] == 1
    assert set(body("/v1/completions")["required"]) == {"model", "prompt"}
    batch = body("/v1/batches")
    assert batch["properties"]["completion_window"]["enum"] == ["24h"]
    assert "/v1/chat/completions" in batch["properties"]["endpoint"]["enum"]
    assert body("/v1/files", "multipart/form-data")["required"] == ["file", "purpose"]
    assert "/v1/usage" in paths
    for path, methods in paths.items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)  # the gateway answers 400
            for status, response in responses.items():
                if status != "200":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, status)
            if path.startswith("/v1/"):
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert "401" in responses
    # No Swagger UI or ReDoc page: FastAPI's load their scripts from a CDN.
    for page in ("/docs", "/redoc"):
        r = httpx.get(gw.url + page, timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_fuzzed_requests_get_documented_answers_and_the_floor_keeps_serving(gw: Gateway) -> None:
    key = gw.key()
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json", config=CONFIG)
    failures: list[str] = []
    answered: set[int] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        secret = ADMIN if operation.path.startswith("/v1/factory/") else key
        auth = {"Authorization": f"Bearer {secret}"}
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.path.startswith("/v1/"):  # /health and /metrics take no input
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            _fuzz(operation, mode, gw, auth, failures, answered)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures[:5])
    assert 200 in answered and {400, 401, 404} <= answered  # it reached the routes' logic
    assert httpx.get(gw.url + "/health", timeout=30).status_code == 200
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ok = httpx.post(gw.v1 + "/chat/completions", json=chat, headers=auth, timeout=30)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    gw: Gateway,
    auth: dict[str, str],
    failures: list[str],
    answered: set[int],
) -> None:
    """Send `EXAMPLES` generated cases; record each answer that breaks a check."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: schemathesis.Case) -> None:
        if mode == schemathesis.GenerationMode.POSITIVE:
            _served(case)
        response = case.call(base_url=gw.url, headers=auth, timeout=60)
        answered.add(response.status_code)
        media = response.headers.get("content-type", [""])[0]
        problem = _shape(response.status_code, media, response.content)
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except BaseException as e:  # schemathesis reports failures as an exception group
            problem = problem or str(e)
        if problem:
            failures.append(f"{case.operation.label}: {problem}\n{case.as_curl_command()}")

    send()


def _served(case: schemathesis.Case) -> None:
    """Point valid completion calls at the served model with a small output, so they run."""
    body = case.body
    if case.operation.path in GENERATION and isinstance(body, dict):
        body["model"] = MODEL
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(name), int):
                body[name] = min(body[name], 8)


def _shape(status: int, media: str, content: bytes) -> str | None:
    """What is wrong with an error answer (None: nothing); 5xx is always wrong."""
    if status >= 500:
        return f"answered {status}: {content[:300]!r}"
    if status < 400:
        return None
    if not media.startswith("application/json"):
        return f"error {status} is not JSON"
    error = json.loads(content).get("error")
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"error {status} is not in OpenAI's shape: {content[:300]!r}"
    return None if error["message"] else f"error {status} has no message"
