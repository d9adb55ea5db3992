"""What a chaos run sends: keys with budgets, and requests of every shape and fault.

Each request is a `Spec`: its key, route (chat, completions, embeddings), model, whether it
streams, how its client behaves (stays, drops the stream after two chunks, leaves before
the first byte) and what the simulated upstream does (gpusim's per-request `sim` knobs:
500, 429 with Retry-After, a hang, an error after a few tokens, no usage in the stream).
The plan is a pure function of its seed and size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# gpusim's own time for an ordinary request: TTFT + tokens x TPOT.
TTFT_MS = 20
TPOT_MS = 10
MAX_TOKENS = 16
HANG_KEY = "hangs"


@dataclass(frozen=True)
class KeySpec:
    """A key and its limits (None: no limit of that kind)."""

    name: str
    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None

    def limits(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm, "monthly_tokens": self.monthly_tokens}


@dataclass(frozen=True)
class Behaviour:
    """One kind of request. `client`: "stay", "drop" (after two chunks) or "leave" (before
    the first byte, after `leave_seconds`); `fault`: the upstream was told to fail."""

    name: str
    weight: float
    routes: tuple[str, ...]
    stream: bool
    client: str = "stay"
    sim: dict[str, Any] = field(default_factory=dict)
    fault: bool = False
    authenticated: bool = True
    bad_input: bool = False


def behaviours(leave_ttft_ms: float) -> tuple[Behaviour, ...]:
    """The mix; weights are relative. Leavers ask for a first token far later than their
    client waits, so an unnoticed departure shows as a request held for that long."""
    gen = ("chat", "completions")
    slow_tokens = {"tpot_ms": 40, "completion_tokens": 40}
    return (
        Behaviour("whole", 24, (*gen, "embeddings"), stream=False),
        Behaviour("stream", 22, gen, stream=True),
        Behaviour("no_usage", 3, gen, stream=True, sim={"omit_usage": True}),
        Behaviour("dropped", 10, gen, stream=True, client="drop", sim=slow_tokens),
        Behaviour("left_buffered", 4, gen, stream=False, client="leave",
                  sim={"ttft_ms": leave_ttft_ms}),
        Behaviour("left_stream", 4, gen, stream=True, client="leave",
                  sim={"ttft_ms": leave_ttft_ms}),
        Behaviour("up500", 5, gen, stream=False,
                  sim={"fail_status": 500}, fault=True),
        Behaviour("up500_stream", 2, gen, stream=True, sim={"fail_status": 500}, fault=True),
        Behaviour("up429", 3, gen, stream=False,
                  sim={"fail_status": 429, "retry_after": 5}, fault=True),
        Behaviour("hang", 1, gen, stream=False, sim={"hang": True}, fault=True),
        Behaviour("hang_stream", 1, gen, stream=True, sim={"hang": True}, fault=True),
        Behaviour("fail_mid", 3, gen, stream=True, sim={"fail_after_tokens": 3}, fault=True),
        Behaviour("fail_buffered", 2, gen, stream=False, sim={"fail_after_tokens": 3},
                  fault=True),
        Behaviour("bad_input", 2, gen, stream=False, bad_input=True),
        Behaviour("bad_key", 2, gen, stream=False, authenticated=False),
    )  # fmt: skip


@dataclass(frozen=True)
class Spec:
    index: int
    key: str  # KeySpec.name
    model: str
    route: str
    behaviour: Behaviour
    max_tokens: int
    leave_seconds: float

    @property
    def tpot_ms(self) -> float:
        return float(self.behaviour.sim.get("tpot_ms", TPOT_MS))

    def path(self) -> str:
        return {
            "chat": "/v1/chat/completions",
            "completions": "/v1/completions",
            "embeddings": "/v1/embeddings",
        }[self.route]

    def body(self) -> dict[str, Any]:
        sim = {"ttft_ms": TTFT_MS, "tpot_ms": TPOT_MS, "completion_tokens": 20}
        sim.update(self.behaviour.sim)
        text = f"Chaos request {self.index}: count to twenty, please."
        if self.route == "embeddings":
            return {"model": self.model, "input": [text, "and another"]}  # no sim knobs
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": -1 if self.behaviour.bad_input else self.max_tokens,
            "stream": self.behaviour.stream,
            "sim": sim,
        }
        if self.route == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        return body


def default_keys(requests: int) -> tuple[KeySpec, ...]:
    """A roomy budget, a budget with a tokens-per-minute limit, a tight requests-per-minute
    limit (refusals), no limits at all (no reservation), and the hangs' key."""
    return (
        KeySpec("budget", monthly_tokens=10**9),
        KeySpec("budget_tpm", tpm=200_000, monthly_tokens=10**9),
        KeySpec("rpm", rpm=max(20, requests // 40), monthly_tokens=10**9),
        KeySpec("unlimited"),
        # Requests whose upstream hangs, on a key of their own: their clients give up after
        # the client timeout, before any header, as early leavers do after 1 s; apart, the
        # audit cannot mistake one for the other when it matches them to their records.
        KeySpec(HANG_KEY),
    )


def make_plan(
    *,
    requests: int,
    keys: tuple[KeySpec, ...],
    chat_models: list[str],
    embedding_model: str,
    leave_seconds: float,
    leave_ttft_ms: float,
    seed: int = 27,
) -> list[Spec]:
    rng = random.Random(seed)
    shared = [k for k in keys if k.name != HANG_KEY]
    mix = behaviours(leave_ttft_ms)
    weights = [b.weight for b in mix]
    specs = []
    for index in range(requests):
        behaviour = rng.choices(mix, weights)[0]
        route = rng.choice(behaviour.routes)
        model = embedding_model if route == "embeddings" else rng.choice(chat_models)
        max_tokens = 40 if behaviour.client == "drop" else MAX_TOKENS
        key = HANG_KEY if behaviour.sim.get("hang") else rng.choice(shared).name
        specs.append(Spec(index, key, model, route, behaviour, max_tokens, leave_seconds))
    return specs
