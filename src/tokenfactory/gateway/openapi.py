"""The gateway's published OpenAPI schema, served at /openapi.json, true to what it accepts.

The completion, batch and file routes read their bodies themselves (to cap their size
before parsing), so FastAPI cannot see those bodies: they are added here from the same
pydantic models the routes validate with. Every error is documented in OpenAI's shape
under the statuses the gateway really answers with (never FastAPI's 422).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.batches import BatchCreate

REF = "#/components/schemas/{model}"
# Bodies the routes parse themselves: (path, method) -> the model they validate with.
JSON_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/v1/chat/completions", "post"): oa.ChatRequest,
    ("/v1/completions", "post"): oa.CompletionRequest,
    ("/v1/batches", "post"): BatchCreate,
}
UPLOAD = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": ["batch"]},
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
# The statuses a route may answer with besides 200, and what each means.
BAD_INPUT = {"400": "the request is malformed or a parameter is invalid"}
AUTHED = {
    "401": "no API key, or one that is unknown or revoked",
    "403": "the key may not use this tier or route",
    "404": "no such object for this key's tenant",
}
BODY = {"413": "the request body is over the gateway's limit"}
JSON_BODY = BODY | {"415": "the Content-Type is not application/json"}
GENERATE = {
    "429": "rate limit, budget or queue full (Retry-After says when to retry)",
    "503": "no healthy engine could serve the request",
}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json) return the completed schema."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the bodies FastAPI cannot see, the bearer scheme and OpenAI-shaped errors."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # the gateway never answers with FastAPI's 422
    schemas["Error"] = ERROR
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            operation["responses"].pop("422", None)
            errors = dict(BAD_INPUT) if operation.get("parameters") else {}
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
                errors |= AUTHED
            model = JSON_BODIES.get((path, method))
            if model is not None:
                schemas |= _definitions(model)
                operation["requestBody"] = _body(
                    "application/json", REF.format(model=model.__name__)
                )
                errors |= BAD_INPUT | JSON_BODY
            elif (path, method) == ("/v1/files", "post"):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": UPLOAD}},
                }
                errors |= BAD_INPUT | BODY
            if path in ("/v1/chat/completions", "/v1/completions"):
                errors |= GENERATE
                # With "stream": true the answer is server-sent events.
                ok = operation["responses"]["200"]["content"]
                event = {"type": "object", "properties": {"data": {"type": "string"}}}
                ok["text/event-stream"] = {"schema": event}
            if path == "/v1/files/{file_id}/content":
                ok = operation["responses"]["200"]
                ok["content"] = {"application/jsonl": {"schema": {"type": "string"}}}
            if path == "/metrics":
                ok = operation["responses"]["200"]
                ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
            if path == "/health":
                errors |= {"503": GENERATE["503"]}
            for status, description in errors.items():
                operation["responses"][status] = _error(description)
    return spec


def _definitions(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema and the ones it refers to, as component schemas."""
    found = model.model_json_schema(ref_template=REF)
    nested = found.pop("$defs", {})
    return {model.__name__: found, **nested}


def _body(media_type: str, ref: str) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": {"$ref": ref}}}}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": REF.format(model="Error")}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
