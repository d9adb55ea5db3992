"""FastAPI dependencies, as Annotated aliases.

They are `async def` even when they do not await: FastAPI runs a plain `def` dependency in
its thread pool, a hop that cost more than the work (measured with py-spy in `make bench`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.keys import ApiKey
from gateway.resources import Resources


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def credentials(request: Request) -> list[str]:
    """The key as Authorization header values: `Authorization: Bearer <key>` (OpenAI's
    clients), else `x-api-key: <key>` (Anthropic's), on every route. Every value is
    returned: more than one is refused (keys/auth.py, Authenticator.authenticate_headers)."""
    headers = request.headers.getlist("authorization")
    if headers:
        return headers
    return [f"Bearer {api_key}" for api_key in request.headers.getlist("x-api-key")]


async def get_current_key(request: Request) -> ApiKey:
    # Read from the headers, not as a `Header` parameter: one dependency fewer to solve
    # (the docs describe the key as a security scheme, openapi.REQUIRES_KEY).
    resources: Resources = request.app.state.resources
    return await resources.authenticator.authenticate_headers(credentials(request))


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


@dataclass(frozen=True)
class Caller:
    """What a metered route needs of its request: the authenticated key, the request id
    and the process's resources. The metered POST routes call get_caller themselves (they
    take only the request: http.MeteredRoute calls them with no dependency to solve);
    other routes solve it as one dependency, CallerDep."""

    key: ApiKey
    request_id: str
    resources: Resources


async def get_caller(request: Request) -> Caller:
    resources: Resources = request.app.state.resources
    key = await resources.authenticator.authenticate_headers(credentials(request))
    return Caller(
        key=key, request_id=str(request.scope["state"]["request_id"]), resources=resources
    )


CallerDep = Annotated[Caller, Depends(get_caller)]
