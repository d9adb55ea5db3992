"""A SageMaker-backed model through the whole gateway: streamed and not, usage recorded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.conftest import running_gateway
from tests.gateway.backends.test_sagemaker import CHUNKS, PIECES, frames, split_every, sse
from tests.support.eventstream import SageMakerStub, json_reply, sagemaker_stub


def test_sagemaker_model_through_the_gateway(
    dynamodb: str, tokenizers_dir: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "models": [
            {"id": "sm-qwen", "tokenizer": "qwen3",
             "upstream": {"type": "sagemaker", "endpoint_name": "qwen-ep"}}
        ]
    }  # fmt: skip
    stub: SageMakerStub
    with sagemaker_stub() as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", stub.url)
        stub.add_stream("qwen-ep", frames(split_every(11)(sse(CHUNKS))))
        with running_gateway(tokenizers_dir, sim_url, models_config=json.dumps(config)) as gw:
            key = gw.new_key()
            headers = {"Authorization": f"Bearer {key}"}
            body = {"model": "sm-qwen", "messages": [{"role": "user", "content": "hi"}]}
            streamed = httpx.post(
                gw.base_url + "/chat/completions", json={**body, "stream": True}, headers=headers
            )
            assert streamed.status_code == 200
            text = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in streamed.text.splitlines()
                if line.startswith("data: {") and '"choices":[]' not in line
            )
            assert text == "".join(PIECES)
            assert streamed.text.rstrip().endswith("data: [DONE]")

            reply = {"id": "x", "object": "chat.completion", "created": 1, "model": "q",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                                  "finish_reason": "stop"}]}  # fmt: skip
            stub.add_invocation("qwen-ep", json_reply(reply))
            plain = httpx.post(gw.base_url + "/chat/completions", json=body, headers=headers)
            assert plain.status_code == 200, plain.text
            assert plain.json()["choices"][0]["message"]["content"] == "Hi!"
            assert plain.json()["model"] == "sm-qwen"

            records = gw.records(key)
            assert [r.endpoint for r in records] == ["sagemaker:qwen-ep"] * 2
            assert all(r.status == "completed" for r in records)
            # the stream's usage came from the endpoint; the plain reply had none, so the
            # gateway's own count is billed
            assert records[1].upstream_prompt_tokens is None
            assert records[1].prompt_tokens == records[1].gateway_prompt_tokens > 0


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_a_fresh_gateway_builds_no_aws_client_on_the_event_loop(
    dynamodb: str, tokenizers_dir: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first SageMaker forward builds the sagemaker-runtime client and the first usage
    write resolves DynamoDB's endpoint and credentials: each in a worker thread."""
    calls: list[tuple[str, bool]] = []
    client, get_credentials = boto3.session.Session.client, boto3.session.Session.get_credentials

    def spy_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((service_name, _on_the_loop()))
        return client(self, service_name, *args, **kwargs)  # type: ignore[call-overload]

    def spy_credentials(self: Any) -> Any:
        calls.append(("credentials", _on_the_loop()))
        return get_credentials(self)

    monkeypatch.setattr(boto3.session.Session, "client", spy_client)
    monkeypatch.setattr(boto3.session.Session, "get_credentials", spy_credentials)
    config = {
        "models": [
            {"id": "sm-qwen", "tokenizer": "qwen3",
             "upstream": {"type": "sagemaker", "endpoint_name": "fresh-ep"}}
        ]
    }  # fmt: skip
    reply = {"id": "x", "object": "chat.completion", "created": 1, "model": "q",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                          "finish_reason": "stop"}]}  # fmt: skip
    with sagemaker_stub() as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", stub.url)
        stub.add_invocation("fresh-ep", json_reply(reply))
        with running_gateway(tokenizers_dir, sim_url, models_config=json.dumps(config)) as gw:
            key = gw.new_key()
            calls.clear()  # new_key wrote the key with boto3 from this (loop-less) thread
            body = {"model": "sm-qwen", "messages": [{"role": "user", "content": "hi"}]}
            answer = httpx.post(
                gw.base_url + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,  # a fresh instance loads the tokenizer on a shared machine
            )
            assert answer.status_code == 200, answer.text
            assert [r.status for r in gw.records(key)] == ["completed"]
    assert ("sagemaker-runtime", False) in calls
    assert ("credentials", False) in calls
    assert [call for call in calls if call[1]] == []
