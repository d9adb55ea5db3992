"""Billing rules, one record per request, and cancellation safety of the Meter."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from gateway.errors import (
    ClientDisconnected,
    DependencyError,
    GuardUnavailableError,
    InternalError,
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.limits import Admission
from gateway.metering import Meter, status_for
from gateway.usage import UsageStatus

from tests.unit.fakes import NullTelemetry, RecordingSink, api_key, chunk

pytestmark = pytest.mark.anyio


class Counter:
    """A tokenizer's text count, from a function."""

    def __init__(self, count: Any) -> None:
        self.count_text = count


def meter(sink: RecordingSink, **kw: object) -> Meter:
    values: dict[str, object] = {
        "request_id": "r1",
        "key": api_key(),
        "sink": sink,
        "telemetry": NullTelemetry(),
        "prompt_tokens": 10,
        "tokenizer": Counter(lambda text: len(text.split())),
        "model_id": "m",
    }
    return Meter(**{**values, **kw})  # type: ignore[arg-type]


async def test_completed_bills_upstream_figures_and_records_both_counts() -> None:
    sink = RecordingSink()
    m = meter(sink, forwarded=True)
    m.observe_chunk(chunk("one two"))
    m.observe_chunk(chunk(finish="stop", usage={"prompt_tokens": 11, "completion_tokens": 4}))
    record = await m.close(UsageStatus.COMPLETED)
    assert (record.prompt_tokens, record.completion_tokens) == (11, 4)
    assert (record.gateway_prompt_tokens, record.gateway_completion_tokens) == (10, 3)  # + EOS
    assert m.telemetry.mismatches == 1  # type: ignore[attr-defined]
    assert sink.records == [record]


async def test_completed_without_upstream_usage_bills_the_gateway_count() -> None:
    m = meter(RecordingSink(), forwarded=True, counts_eos=False)
    m.observe_completion({"choices": [{"message": {"content": "a b c"}, "finish_reason": "stop"}]})
    record = await m.close(UsageStatus.COMPLETED)
    assert (record.prompt_tokens, record.completion_tokens) == (10, 3)
    assert record.finish_reason == "stop"


async def test_insane_upstream_usage_is_ignored_and_flagged() -> None:
    m = meter(RecordingSink(), forwarded=True)
    m.observe_usage({"prompt_tokens": -5, "completion_tokens": 1})
    record = await m.close(UsageStatus.COMPLETED)
    assert record.prompt_tokens == 10 and record.upstream_prompt_tokens is None
    assert record.flags == "upstream_usage_invalid"


async def test_nothing_is_billed_before_forwarding() -> None:
    m = meter(RecordingSink())
    record = await m.fail(InvalidRequestError("bad"))
    assert (record.status, record.total_tokens, record.http_status) == ("rejected", 0, 400)
    assert record.gateway_prompt_tokens is None


async def test_disconnect_after_forwarding_bills_prompt_and_what_was_seen() -> None:
    m = meter(RecordingSink(), forwarded=True)
    m.observe_chunk(chunk("a b"))
    record = await m.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
    assert (record.prompt_tokens, record.completion_tokens) == (10, 2)
    assert record.ttft_ms is not None


async def test_failure_before_any_token_bills_nothing_after_some_bills_them() -> None:
    clean = await meter(RecordingSink(), forwarded=True).fail(UpstreamError("down"))
    assert (clean.status, clean.total_tokens) == ("upstream_error", 0)
    m = meter(RecordingSink(), forwarded=True)
    m.observe_chunk(chunk("x y z"))
    partial = await m.fail(UpstreamError("dropped"))
    assert (partial.prompt_tokens, partial.completion_tokens) == (10, 3)


async def test_tool_call_text_is_counted_as_generated() -> None:
    m = meter(RecordingSink(), forwarded=True, counts_eos=False)
    call = {"index": 0, "function": {"name": "get weather", "arguments": '{"city": "Paris"}'}}
    m.observe_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    record = await m.close(UsageStatus.COMPLETED)
    # name and arguments are one generated text: 'get weather{"city": "Paris"}', 3 words
    assert record.completion_tokens == 3


async def test_close_is_idempotent_and_concurrent_closes_write_once() -> None:
    sink = RecordingSink()
    m = meter(sink, forwarded=True)
    results = []

    async def close(status: UsageStatus) -> None:
        results.append(await m.close(status))

    async with anyio.create_task_group() as group:
        group.start_soon(close, UsageStatus.COMPLETED)
        group.start_soon(close, UsageStatus.CLIENT_DISCONNECTED)
    assert len(sink.records) == 1 and results[0] is results[1]


async def test_a_cancelled_close_still_writes_and_settles() -> None:
    sink = RecordingSink()
    admission = Admission(key_id="key_unit", reserved_tokens=50)
    m = meter(sink, forwarded=True, admission=admission)
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before close even starts: the write is shielded
        await m.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
    assert len(sink.records) == 1 and sink.admissions == [admission]


async def test_a_failing_counter_costs_a_flag_not_the_record() -> None:
    def broken(text: str) -> int:
        raise RuntimeError("tokenizer bug")

    m = meter(RecordingSink(), forwarded=True, tokenizer=Counter(broken))
    m.observe_chunk(chunk("x"))
    record = await m.close(UsageStatus.COMPLETED)
    assert record.flags == "gateway_count_failed"


async def test_media_parts_are_estimated_only_without_upstream_usage() -> None:
    m = meter(RecordingSink(), forwarded=True, media=["image"])
    record = await m.close(UsageStatus.COMPLETED)
    assert record.prompt_estimated and record.prompt_tokens > 10
    m2 = meter(RecordingSink(), forwarded=True, media=["image"])
    m2.observe_usage({"prompt_tokens": 300, "completion_tokens": 1})
    record2 = await m2.close(UsageStatus.COMPLETED)
    assert record2.prompt_estimated is False and record2.prompt_tokens == 300


def test_status_for_each_error_class() -> None:
    # A DynamoDB or guard outage is neither the request's fault (rejected: bad input) nor a
    # gateway bug: `unavailable` (issue 27); a client gone before its answer, its own.
    assert status_for(DependencyError("d")) is UsageStatus.UNAVAILABLE
    assert status_for(GuardUnavailableError("g")) is UsageStatus.UNAVAILABLE
    assert status_for(ClientDisconnected("c")) is UsageStatus.CLIENT_DISCONNECTED
    assert status_for(UpstreamTimeoutError("t")) is UsageStatus.UPSTREAM_TIMEOUT
    assert status_for(UpstreamError("u")) is UsageStatus.UPSTREAM_ERROR
    assert status_for(RateLimitError("r")) is UsageStatus.RATE_LIMITED
    assert status_for(InternalError("i")) is UsageStatus.INTERNAL_ERROR
    assert status_for(InvalidRequestError("v")) is UsageStatus.REJECTED
    rejected = InvalidRequestError("x", code="upstream_rejected_request")
    assert status_for(rejected) is UsageStatus.UPSTREAM_ERROR


@pytest.mark.parametrize(
    ("stop_reason", "counts_eos", "expected"),
    [
        (None, False, 3),  # EOS ended it although stop strings were requested: +1
        (2, False, 3),  # a stop token id: +1
        (" stop here", True, 4),  # the stop string is counted with the text, no EOS
        ("x" * 5000, False, 2),  # not a plausible stop string: the request's rule (no EOS)
        (True, True, 3),  # not vLLM's shape: the request's rule (EOS)
    ],
)
async def test_vllm_stop_reason_decides_eos_and_stop_strings(
    stop_reason: object, counts_eos: bool, expected: int
) -> None:
    """vLLM counts the EOS/stop token, and the ids through the one that completed a stop
    string (whose text it cuts): the gateway's own count follows `stop_reason`."""
    for streamed in (True, False):
        m = meter(RecordingSink(), forwarded=True, counts_eos=counts_eos)
        if streamed:
            m.observe_chunk(chunk("one two"))
            m.observe_chunk(
                {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {},
                            "finish_reason": "stop",
                            "stop_reason": stop_reason,
                        }
                    ]
                }
            )
        else:
            m.observe_completion(
                {
                    "choices": [
                        {
                            "message": {"content": "one two"},
                            "finish_reason": "stop",
                            "stop_reason": stop_reason,
                        }
                    ]
                }
            )
        record = await m.close(UsageStatus.COMPLETED)
        assert record.gateway_completion_tokens == expected, (streamed, stop_reason)


async def test_outside_an_audit_the_completion_is_counted_only_where_it_adds_information() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text.split())

    reported = meter(RecordingSink(), forwarded=True, audit=False, tokenizer=Counter(count))
    reported.observe_chunk(chunk("one two"))
    reported.observe_chunk(
        chunk(finish="stop", usage={"prompt_tokens": 10, "completion_tokens": 3})
    )
    record = await reported.close(UsageStatus.COMPLETED)
    assert counted == []  # the upstream's figures are billed: a count would change nothing
    assert (record.completion_tokens, record.gateway_completion_tokens) == (3, None)
    assert reported.telemetry.mismatches == 0  # type: ignore[attr-defined]

    unreported = meter(RecordingSink(), forwarded=True, audit=False, tokenizer=Counter(count))
    unreported.observe_chunk(chunk("one two", finish="stop"))
    record = await unreported.close(UsageStatus.COMPLETED)
    assert counted == ["one two"] and record.completion_tokens == 3  # + EOS

    cut = meter(RecordingSink(), forwarded=True, audit=False, tokenizer=Counter(count))
    cut.observe_chunk(chunk("a b c", usage={"prompt_tokens": 10, "completion_tokens": 3}))
    record = await cut.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
    assert counted[-1] == "a b c" and record.completion_tokens == 3


async def test_generated_anything_is_text_tool_calls_or_a_finish_not_an_empty_delta() -> None:
    m = meter(RecordingSink(), forwarded=True)
    assert not m.generated_anything
    m.observe_chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    assert not m.generated_anything
    # nothing generated yet: a failure now bills nothing
    empty = await m.fail(UpstreamError("dropped"))
    assert empty.total_tokens == 0

    call = {"index": 0, "function": {"name": "lookup", "arguments": ""}}
    tool = meter(RecordingSink(), forwarded=True)
    tool.observe_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    assert tool.generated_anything

    finished = meter(RecordingSink(), forwarded=True)
    finished.observe_chunk(chunk(finish="length"))  # a finish without text is an answer
    assert finished.generated_anything
    record = await finished.fail(UpstreamError("dropped"))
    assert record.prompt_tokens == 10  # cut short after generating: the prompt is billed

    text = meter(RecordingSink(), forwarded=True)
    text.observe_completion({"choices": [{"message": {"content": "hi"}}]})
    assert text.generated_anything
