"""FastAPI dependencies, as Annotated aliases.

They are `async def` even when they do not await: FastAPI runs a plain `def` dependency in
its thread pool, a hop that cost more than the work (measured with py-spy in `make bench`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.chat.service import ChatService
from gateway.keys import ApiKey
from gateway.resources import Resources


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_request_id(request: Request) -> str:
    return str(request.scope["state"]["request_id"])


RequestId = Annotated[str, Depends(get_request_id)]


async def get_current_key(
    resources: ResourcesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ApiKey:
    return await resources.authenticator.authenticate(authorization)


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


async def get_chat_service(resources: ResourcesDep) -> ChatService:
    return resources.chat


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
