"""Every error leaves the gateway in OpenAI's shape: {"error": {message, type, param, code}}.

Raised anywhere as a TokenfactoryError, mapped here once.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from tokenfactory.errors import BadInput, RateLimited, TokenfactoryError

log = logging.getLogger("tokenfactory.gateway")


def error_body(message: str, type_: str, code: str | None, param: str | None) -> dict[str, object]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(e: TokenfactoryError) -> JSONResponse:
    """The response for one of our errors, with Retry-After when there is one."""
    headers = {}
    if isinstance(e, RateLimited):
        headers["Retry-After"] = str(max(1, round(e.retry_after_s)))
    body = error_body(e.message, e.type, e.code, e.param)
    return JSONResponse(body, status_code=e.status, headers=headers)


def validation_error(e: ValidationError) -> BadInput:
    """A request body that does not fit the schema, naming the first bad parameter."""
    first = e.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif param:
        message = f"{param}: {message}"
    return BadInput(message, param=param)


def unexpected(request: Request, e: Exception) -> JSONResponse:
    """Log an error nothing expected; the 500 that answers it if nothing was sent yet."""
    log.error("unexpected error on %s", request.url.path, exc_info=e)
    body = error_body("internal error", "server_error", "internal_error", None)
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    """Map every exception the app can meet to one error response."""

    @app.exception_handler(TokenfactoryError)
    async def ours(request: Request, e: TokenfactoryError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, e: ValidationError) -> JSONResponse:
        return error_response(validation_error(e))

    @app.exception_handler(RequestValidationError)
    async def fastapi_validation(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(BadInput(str(e.errors()[0].get("msg", "invalid request"))))

    @app.exception_handler(HTTPException)
    async def http(request: Request, e: HTTPException) -> JSONResponse:
        code = "not_found" if e.status_code == 404 else None
        body = error_body(str(e.detail), "invalid_request_error", code, None)
        return JSONResponse(body, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> JSONResponse:
        return unexpected(request, e)
