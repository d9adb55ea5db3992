"""The workload: multi-turn conversations that share a few system prompts.

Deterministic from its seed: conversation i starts at i / rate seconds, picks one of the
system prompts, and asks `turns` questions, each sent once the previous answer is in and
`think` seconds have passed. Texts are drawn from a fixed vocabulary, so their token counts
are stable across runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_VOCABULARY = (
    "cache block prefix replica router token queue engine batch decode prefill tenant "
    "gateway latency memory model prompt answer system request stream bounded ring hash "
    "share load metric sample window budget retry endpoint server region cluster weight "
    "alpha beta gamma delta river mountain harbor lantern meadow orchard violet copper "
    "granite willow falcon ember quartz saffron tundra canyon glacier"
)
_WORDS = _VOCABULARY.split()


@dataclass(frozen=True)
class Workload:
    conversations: int = 240
    turns: int = 6
    rate: float = 4.0  # conversations started per second
    think: float = 1.0  # seconds between an answer and the next question
    system_prompts: int = 4
    system_words: int = 100
    first_words: int = 300  # a pasted document, an article to discuss
    later_words: int = 50
    seed: int = 24

    def scaled(self, scale: float) -> Workload:
        """`scale` x the conversations, at the same rate (the run takes `scale` x as long)."""
        return Workload(
            **{**self.__dict__, "conversations": max(3, round(self.conversations * scale))}
        )


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


@dataclass(frozen=True)
class Conversation:
    start: float
    system: str
    questions: tuple[str, ...]


def conversations(workload: Workload) -> list[Conversation]:
    rng = random.Random(workload.seed)
    systems = [
        f"You are assistant {n}. " + _text(rng, workload.system_words)
        for n in range(workload.system_prompts)
    ]
    out = []
    for index in range(workload.conversations):
        questions = [f"Question {index}: " + _text(rng, workload.first_words)]
        questions += [_text(rng, workload.later_words) for _ in range(workload.turns - 1)]
        out.append(Conversation(index / workload.rate, rng.choice(systems), tuple(questions)))
    return out
