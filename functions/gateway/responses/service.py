"""The Responses API surface (`POST /v1/responses`): its wire adapters for the pipeline.

A request is translated to the chat-completions body the chat route would forward for the
same conversation (translate.py), and that body is counted, planned, screened and
forwarded by the chat surface's own adapters, so the prompt is counted over the model's
chat template exactly as chat counts it. A follow-up turn (`previous_response_id`) is
expanded from the ConversationStore, scoped to the key's owner, before anything is
counted; a stored response (`store`, default true) is written after the usage record,
before the client gets its answer.

A model that serves the Responses API natively (`native_routes`) is counted and planned
the same way, then sent the Responses body itself (translate.native_body: the expanded
input, `store: false`) on /v1/responses. Its answer is read as chat by the wire parsers
(backends/wire_native.py), so the client gets the same response, events, usage and
stored items as on the translated path.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from gateway.backends.native import Ended
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import CHAT
from gateway.backends.wire_responses import RESPONSES
from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.service import ChatSurface
from gateway.conversations import ConversationStore
from gateway.errors import GatewayError
from gateway.guard import GuardService, Screening
from gateway.inputs import parse_body, validate
from gateway.pipeline import Plan, RequestContext, billed_usage
from gateway.pipeline.events import relay_events, with_details
from gateway.responses import answer, translate
from gateway.responses.protocol import ResponsesRequest, parse_request
from gateway.responses.stream import ResponsesStream, sse_frame
from gateway.tokens import TokenizerStore

ROUTE = "responses"


@dataclass
class ResponsesCall:
    """One request as the surface carries it between the pipeline's steps: the Responses
    request, and what `plan` derived from it (the conversation's earlier items and the
    chat request that is counted and forwarded)."""

    request: ResponsesRequest
    history: list[dict[str, Any]] = field(default_factory=list)
    chat: ChatCompletionRequest | None = None
    native: bool = False  # forwarded to the upstream's own /v1/responses

    @property
    def chat_request(self) -> ChatCompletionRequest:
        assert self.chat is not None, "plan() runs first"
        return self.chat

    def conversation_input(self) -> list[dict[str, Any]]:
        """What a stored response keeps as its input: the history and this turn's own."""
        return [*self.history, *translate.input_items(self.request)]


class ResponsesSurface:
    route = ROUTE
    wire = CHAT  # translated: the upstream is spoken to in chat completions

    def __init__(self, *, chat: ChatSurface, store: ConversationStore) -> None:
        self._chat = chat
        self._store = store

    def parse(self, raw: bytes) -> ResponsesCall:
        return ResponsesCall(parse_request(parse_body(raw)))

    def model_id(self, call: ResponsesCall) -> str:
        return call.request.model

    def streams(self, call: ResponsesCall) -> bool:
        return bool(call.request.stream)

    async def plan(
        self, call: ResponsesCall, ctx: RequestContext, tokenizers: TokenizerStore
    ) -> Plan:
        request = call.request
        if request.previous_response_id is not None:
            # The owner's earlier turn, or a 404 exactly like an unknown id.
            call.history = await anyio.to_thread.run_sync(
                functools.partial(
                    self._store.expand,
                    previous_response_id=request.previous_response_id,
                    owner=ctx.key.owner,
                )
            )
        call.chat = validate(ChatCompletionRequest, translate.to_chat(request, call.history))
        plan = await self._chat.plan(call.chat, ctx, tokenizers)
        assert ctx.model is not None
        if ROUTE not in ctx.model.native_routes:
            return plan
        # Counted and capped as chat; sent as the Responses request it is.
        call.native = ctx.meter.own_prompt = True  # billed by the chat template's count
        body = translate.native_body(request, call.history)
        body["model"] = plan.body["model"]
        body["max_output_tokens"] = plan.body["max_tokens"]
        return dataclasses.replace(plan, body=body, wire=RESPONSES)

    def screening(self, call: ResponsesCall, ctx: RequestContext, guard: GuardService) -> Screening:
        return self._chat.screening(call.chat_request, ctx, guard)

    async def forward(
        self, call: ResponsesCall, ctx: RequestContext, backend: RoutedBackend, plan: Plan
    ) -> dict[str, Any]:
        return await self._chat.forward(call.chat_request, ctx, backend, plan)

    async def answer(
        self, call: ResponsesCall, ctx: RequestContext, data: Mapping[str, Any]
    ) -> dict[str, Any]:
        usage = data.get("usage")
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        response = answer.response_from_chat(
            data,
            response_id=response_id(ctx.request_id),
            created=ctx.meter.created,
            model=call.request.model,
            request=call.request,
            usage=with_details(billed_usage(ctx.meter), details),
        )
        await self.keep(call, ctx, response)
        return response

    def relay(
        self, call: ResponsesCall, ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        if call.native:
            chunks = Ended(chunks)
        return relay_events(ctx.meter, chunks, ResponsesEvents(self, call, ctx))

    async def keep(
        self, call: ResponsesCall, ctx: RequestContext, response: Mapping[str, Any]
    ) -> None:
        """Store the response for follow-up turns and GET, when the request asks to."""
        if call.request.store is False:
            return
        await anyio.to_thread.run_sync(
            functools.partial(
                self._store.put,
                response_id=str(response["id"]),
                owner=ctx.key.owner,
                input_items=call.conversation_input(),
                output_items=list(response["output"]),
                response=response,
            )
        )


class ResponsesEvents:
    """The Responses API's stream events for one request (pipeline/events.EventStream)."""

    def __init__(self, surface: ResponsesSurface, call: ResponsesCall, ctx: RequestContext):
        self._surface = surface
        self._call = call
        self._ctx = ctx
        self._stream = ResponsesStream(
            response_id=response_id(ctx.request_id),
            created=ctx.meter.created,
            model=call.request.model,
            request=call.request,
        )

    def start(self) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.start()]

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.feed(chunk)]

    async def finish(self, usage: Mapping[str, Any]) -> list[bytes]:
        # The last events are decided on a copy: if storing fails, `fail` continues from
        # the last event sent, so sequence numbers stay consecutive.
        done = copy.deepcopy(self._stream)
        events = done.finish(usage)
        await self._surface.keep(self._call, self._ctx, events[-1][1]["response"])
        self._stream = done
        return [sse_frame(event) for event in events]

    def fail(self, error: GatewayError) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.fail(error)]


def response_id(request_id: str) -> str:
    return f"resp_{request_id}"
