"""POST /v1/chat/completions as a plain ASGI app (no validation framework on the hot path)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from functools import partial

import orjson
from starlette.types import Receive, Scope, Send

from gpusim.config import SimConfig
from gpusim.disconnect import DisconnectWatch
from gpusim.engine import Admission, SeqSpec
from gpusim.errors import RequestError, error_bytes
from gpusim.generate import ChoiceResult, Limits, run_choice
from gpusim.guard import guard_result
from gpusim.models import ModelRegistry, SimModel, TemplateRenderError
from gpusim.params import ChatRequest, parse_request
from gpusim.replica import Replica, check_context
from gpusim.stats import Stats
from gpusim.structured import (
    json_result,
    logprobs_for,
    null_content_as_empty,
    strip_media,
    tool_choice_result,
)
from gpusim.toolcalls import auto_calls, wants_tool_call
from gpusim.wire import (
    DONE,
    JSON_HEADERS,
    SSE_HEADERS,
    ChunkEncoder,
    completion_body,
    read_body,
)


@dataclass
class Outcome:
    """How a generation ended, for the stats."""

    completed: bool = False
    cancelled: bool = False


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw_headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    await asyncio.sleep(delay if delay > 0 else 0)


async def _hang() -> None:
    await asyncio.Event().wait()  # never set: only cancellation ends it


def _simulated_failure(req: ChatRequest) -> RequestError | None:
    status = req.sim.fail_status
    if status is None:
        return None
    headers = {}
    if req.sim.retry_after is not None:
        headers["retry-after"] = f"{req.sim.retry_after:g}"
    return RequestError(status, f"Simulated failure (HTTP {status}).", headers=headers)


def _failure_after(tokens: int) -> bytes:
    message = f"Simulated upstream failure after {tokens} tokens."
    return error_bytes(message, "InternalServerError", None, 500)


@dataclass
class Work:
    """A validated request: its generation, and the engine sequences that run it (one per
    choice, and per prompt on /v1/completions)."""

    req: ChatRequest
    prompt_tokens: int
    results: list[ChoiceResult]
    seqs: list[SeqSpec]
    arrival: float


class ChatEndpoint:
    """Generates deterministic completions for the configured models. Subclasses (legacy
    completions) change the request parsing, the body and the chunk encoder."""

    body_for = staticmethod(completion_body)
    encoder_class: type[ChunkEncoder] = ChunkEncoder

    def __init__(
        self,
        config: SimConfig,
        registry: ModelRegistry,
        stats: Stats,
        replica: Replica | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.stats = stats
        self.replica = replica or Replica(registry.names, config.engine_config())

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        arrival = asyncio.get_running_loop().time()
        raw = await read_body(receive)
        self.stats.requests += 1
        if raw is None:
            return
        try:
            work = await self._prepare(raw, arrival)
        except RequestError as exc:
            await send_json(send, exc.status, orjson.dumps(exc.body()), exc.headers)
            return
        self.stats.active += 1
        outcome = Outcome()
        try:
            await self._respond(work, receive, send, outcome)
        finally:
            self.stats.active -= 1
            self.stats.completed += outcome.completed
            self.stats.cancelled += outcome.cancelled

    async def _prepare(self, raw: bytes, arrival: float) -> Work:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"Invalid JSON body: {exc}") from exc
        req = parse_request(body, self.config)
        failure = _simulated_failure(req)
        if failure is not None:
            raise failure
        model = self.registry.get(req.model)
        if model is None:
            message = f"The model `{req.model}` does not exist."
            raise RequestError(404, message, param="model")
        self._check_priority(req)
        await model.ensure_loaded()
        messages, media_tokens = null_content_as_empty(req.messages), 0
        if req.model in self.config.multimodal:
            messages, media_tokens = strip_media(messages)
        try:
            ids = model.cached_prompt_ids(
                messages,
                tools=req.tools,
                chat_template=req.chat_template,
                add_generation_prompt=req.add_generation_prompt,
                template_kwargs=req.template_kwargs,
            )
            prompt_tokens = media_tokens + len(ids)
            req = self._within_context(req, prompt_tokens)
            results = self._generate(model, req)
        except (TemplateRenderError, ValueError) as exc:
            raise RequestError(400, str(exc)) from exc
        seqs = [SeqSpec(ids, prompt_tokens, len(r.steps)) for r in results]
        return Work(req, prompt_tokens, results, seqs, arrival)

    def _check_priority(self, req: ChatRequest) -> None:
        refusal = self.replica.engine(req.model).validate_priority(req.priority)
        if refusal is not None:
            raise RequestError(400, refusal, param="priority")

    def _within_context(self, req: ChatRequest, prompt_tokens: int) -> ChatRequest:
        """vLLM's max_model_len check, and its default max_tokens: what the context has left."""
        limit = self.config.context_length(req.model)
        if limit is None:
            return req
        check_context(limit, prompt_tokens, req.max_tokens)
        room = limit - prompt_tokens
        if req.max_tokens is None or req.max_tokens > room:
            return replace(req, max_tokens=room)
        return req

    @staticmethod
    def _limits(req: ChatRequest) -> Limits:
        return Limits(
            natural_tokens=req.sim.completion_tokens,
            max_tokens=req.max_tokens,
            min_tokens=req.min_tokens,
            ignore_eos=req.ignore_eos,
            stop=req.stop,
        )

    def _generate(self, model: SimModel, req: ChatRequest) -> list[ChoiceResult]:
        limits = self._limits(req)
        if req.model in self.config.guard_models:
            triggers = self.config.guard_triggers
            return [guard_result(model, req.messages, triggers, req.max_tokens)] * req.n
        auto = auto_calls(req.tools, req.messages, req.sim.tool_calls)
        if wants_tool_call(req.tools, req.tool_choice, auto):
            results = [tool_choice_result(model, req, choice) for choice in range(req.n)]
        elif req.response_format != "text":
            results = [json_result(model, req, choice) for choice in range(req.n)]
        else:
            results = [
                run_choice(partial(model.script, req.seed, choice), limits)
                for choice in range(req.n)
            ]
        if req.logprobs:
            results = [
                replace(r, logprobs=logprobs_for(model, r.token_ids, req.top_logprobs))
                for r in results
            ]
        return results

    def _cached_tokens(self, _work: Work, admission: Admission) -> int | None:
        """usage.prompt_tokens_details.cached_tokens: the prompt's cached tokens, reported
        with --enable-prompt-tokens-details (choices of one prompt share its blocks)."""
        if not self.config.enable_prompt_tokens_details:
            return None
        return admission.cached_tokens[0] if admission.cached_tokens else None

    async def _admit(self, work: Work) -> Admission:
        req = work.req
        admission = await self.replica.engine(req.model).admit(
            work.seqs, priority=req.priority, cache_salt=req.cache_salt
        )
        self.replica.admitted(req.model, admission)
        return admission

    def _release(self, work: Work, admission: Admission | None, completed: bool) -> None:
        if admission is None:
            return
        generated = [r.token_ids for r in work.results] if completed else None
        self.replica.engine(work.req.model).release(admission, generated)

    def _first_token(self, work: Work) -> None:
        seconds = asyncio.get_running_loop().time() - work.arrival
        self.replica.metrics.first_token(work.req.model, seconds)

    async def _respond(self, work: Work, receive: Receive, send: Send, outcome: Outcome) -> None:
        if work.req.stream:
            with DisconnectWatch(receive) as watch:
                await self._stream(work, send, watch, outcome)
            outcome.cancelled = watch.cancelled
            return
        engine = self.replica.engine(work.req.model)
        sim = work.req.sim
        steps = max(len(r.steps) for r in work.results)
        if sim.fail_after_tokens is not None:
            steps = min(steps, sim.fail_after_tokens)
        admission: Admission | None = None
        waits = sim.ttft_ms > 0 or sim.tpot_ms > 0 or sim.hang or engine.delays or engine.running
        try:
            if waits:
                with DisconnectWatch(receive) as watch:
                    admission = await self._admit(work)
                    if sim.hang:
                        await _hang()
                    await self._generation_time(work, admission, steps)
                    watch.armed = False
                if watch.cancelled:
                    outcome.cancelled = True
                    return
            else:
                admission = await self._admit(work)
                self._first_token(work)
            if sim.fail_after_tokens is not None:
                await send_json(send, 500, _failure_after(steps))
                return
            assert admission is not None
            body = self.body_for(
                work.req.model,
                work.prompt_tokens,
                work.results,
                with_usage=not sim.omit_usage,
                cached_tokens=self._cached_tokens(work, admission),
            )
            outcome.completed = True
            await send_json(send, 200, body)
        finally:
            self._release(work, admission, outcome.completed)

    async def _generation_time(self, work: Work, admission: Admission, steps: int) -> None:
        """Sleep through prefill and decode: the first token, then one step per token."""
        engine = self.replica.engine(work.req.model)
        sim = work.req.sim
        await asyncio.sleep(sim.ttft_ms / 1000 + admission.prefill_seconds)
        self._first_token(work)
        if engine.config.decode_ms_per_seq == 0:
            await asyncio.sleep(max(steps - 1, 0) * sim.tpot_ms / 1000)
            return
        for _ in range(steps - 1):
            await asyncio.sleep(engine.decode_seconds(sim.tpot_ms))

    async def _stream(
        self, work: Work, send: Send, watch: DisconnectWatch, outcome: Outcome
    ) -> None:
        req, results, sim = work.req, work.results, work.req.sim
        engine = self.replica.engine(req.model)
        report_usage = req.include_usage and not sim.omit_usage
        encoder = self.encoder_class(req.model, usage_field=report_usage)
        total = max(len(r.steps) for r in results)
        failing = sim.fail_after_tokens is not None
        steps = min(total, sim.fail_after_tokens or 0) if failing else total
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        admission: Admission | None = None
        try:
            admission = await self._admit(work)
            if sim.hang:
                await _hang()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + sim.ttft_ms / 1000 + admission.prefill_seconds
            for j in range(steps):
                await _sleep_until(deadline)
                if j == 0:
                    self._first_token(work)
                deadline += engine.decode_seconds(sim.tpot_ms)
                parts = [encoder.role(c) for c in range(len(results))] if j == 0 else []
                for c, result in enumerate(results):
                    if j < len(result.steps):
                        step = encoder.step(c, result, j)
                        if step:
                            parts.append(step)
                        if j == len(result.steps) - 1 and not failing:
                            parts.append(encoder.finish(c, result))
                if j == total - 1 and not failing:
                    if report_usage:
                        used = sum(r.completion_tokens for r in results)
                        cached = self._cached_tokens(work, admission)
                        parts.append(encoder.usage(work.prompt_tokens, used, cached))
                    parts.append(DONE)
                    watch.armed = False
                    outcome.completed = True
                    await send({"type": "http.response.body", "body": b"".join(parts)})
                    return
                body = b"".join(parts)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await _sleep_until(deadline)
            error = b"data: " + _failure_after(steps) + b"\n\n"
            watch.armed = False
            await send({"type": "http.response.body", "body": error})
        finally:
            self._release(work, admission, outcome.completed)
