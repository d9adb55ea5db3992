"""HTTP for legacy completions: thin; the work is in service.py. The body is read raw
(as chat's is), so every authenticated request, valid or not, is metered."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.completions.protocol import Completion, CompletionRequest
from gateway.deps import get_caller
from gateway.http import HttpClient, MeteredRoute, respond
from gateway.openapi import REQUIRES_KEY, errors
from gateway.openapi_shapes import event_stream, json_body, raw_body

router = APIRouter(tags=["completions"], route_class=MeteredRoute)

# The shapes the route names in /docs (app.py gives them to install_openapi).
COMPONENTS = (CompletionRequest, Completion)


@router.post(
    "/v1/completions",
    responses={
        200: {
            "description": "A `text_completion` object; with `stream: true`, server-sent "
            "events: one `text_completion` chunk per `data:` event, then `data: [DONE]`.",
            "content": {
                **json_body(Completion),
                # A streamed completion's events are `text_completion` objects too.
                **event_stream(
                    Completion,
                    'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
                    '"choices":[{"index":0,"text":"Hi","logprobs":null,"finish_reason":null}]}'
                    "\n\ndata: [DONE]\n\n",
                ),
            },
        },
        **errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
    },
    summary="Create a (legacy) text completion",
    description="OpenAI's legacy completions on a self-hosted model, with chat's keys, "
    "allow-lists, limits and usage records. Prompts are counted as vLLM counts them: "
    "special tokens added; token-id prompts count their length.",
    openapi_extra={**REQUIRES_KEY, **raw_body(CompletionRequest)},
)
@router.post("/completions", include_in_schema=False)
async def create_completion(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    result = await resources.pipeline.run(
        resources.completions, HttpClient(request), key=caller.key, request_id=caller.request_id
    )
    return respond(result)
