"""The reference suite's inputs: conversations and plain texts, built deterministically.

The expected counts are not written here: tests/gateway/tokens/generate_reference.py runs
transformers on these inputs and writes reference_counts.json.

A case is a JSON object: {"id", "messages"} and optionally "tools" (a list of OpenAI tool
definitions). Tool-calling cases can be added to `tool_cases()` once the gateway renders
`tools=`; the generator already passes "tools" to apply_chat_template, and the tests hand it
to the gateway's count (see test_reference.py `gateway_prompt_count`).
"""

from __future__ import annotations

from typing import Any

Case = dict[str, Any]

CODE = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


if __name__ == "__main__":
    print([fib(i) for i in range(10)])  # {"json": [1, 2]}
'''

# Texts chosen for where tokenizers disagree: whitespace at segment edges, text that looks
# like each family's special tokens, "▁", Unicode normalization (NFC), control characters.
EDGE_TEXTS: list[str] = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    " \n ",
    "Hello, world!",
    " leading space",
    "trailing space ",
    "  both sides  ",
    "line one\nline two",
    "\nstarts with a newline",
    "ends with a newline\n",
    "<s>",
    "</s>",
    "<s> after bos",
    "text</s> more text",
    "<unk>",
    "<|im_start|>user\nfake turn<|im_end|>",
    "<|eot_id|><|start_header_id|>system<|end_header_id|>",
    "<|begin_of_text|>",
    "<|endoftext|>",
    "[INST] not a turn [/INST]",
    "<|user|>\n<|assistant|>",
    "<think>\nreasoning\n</think>\n\nanswer",
    "▁",
    "▁▁double metaspace",
    "e\u0301 combining accent vs \u00e9",
    "\u00a0non-breaking space\u00a0",
    "zero\u200bwidth\u200djoiner",
    "日本語のテキストと中文文本",
    "Ελληνικά, русский, עברית, العربية",
    "emoji 🚀🎉👩‍👩‍👧 flags 🇫🇷",
    "tab\tseparated\tvalues\r\nwindows line",
    "\x00\x01 control \x7f",
    CODE,
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "1234567890 3.14159 -42 1e-9 0x1F",
    "https://example.com/path?q=a+b&x=%20#frag",
    "    indented\n        more indented",
    "word " * 400,
    ("The quick brown fox jumps over the lazy dog. " * 60).strip(),
    "x" * 3000,
]

ASSISTANT_REPLIES = ["Sure.", " Spaced reply ", "", "Line\nbreaks\n", "</s>", "Ça va? 🙂"]


def _conversation_cases() -> list[Case]:
    cases: list[Case] = []
    for i, text in enumerate(EDGE_TEXTS):
        cases.append({"id": f"user-{i}", "messages": [{"role": "user", "content": text}]})
        cases.append(
            {
                "id": f"system-{i}",
                "messages": [
                    {"role": "system", "content": text},
                    {"role": "user", "content": "What now?"},
                ],
            }
        )
        cases.append(
            {
                "id": f"reply-{i}",
                "messages": [
                    {"role": "user", "content": "Say something."},
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": "Thanks"},
                ],
            }
        )
        reply = ASSISTANT_REPLIES[i % len(ASSISTANT_REPLIES)]
        cases.append(
            {
                "id": f"turns-{i}",
                "messages": [
                    {"role": "user", "content": "First question."},
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": text},
                ],
            }
        )
    return cases


def _shape_cases() -> list[Case]:
    """Multi-turn shapes, list-of-parts content, roles some templates refuse."""
    user = {"role": "user", "content": "Hi"}
    assistant = {"role": "assistant", "content": "Hello! How can I help?"}
    long_turns = [
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"turn {k}: " + "lorem " * 50}
        for k in range(9)
    ]
    parts = [
        [{"type": "text", "text": "one part"}],
        [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        [{"type": "text", "text": ""}, {"type": "text", "text": " spaced "}],
        [{"type": "text", "text": "</s>"}, {"type": "text", "text": "<|im_end|>"}],
        [{"type": "text", "text": "日本"}, {"type": "text", "text": "🚀"}],
    ]
    shapes: dict[str, list[dict[str, Any]]] = {
        "seven-turns": [user, assistant, user, assistant, user, assistant, user],
        "long-turns": long_turns,
        "system-then-turns": [{"role": "system", "content": "Be brief."}, user, assistant, user],
        "assistant-last": [user, assistant],
        "assistant-first": [assistant, user],
        "two-users": [user, {"role": "user", "content": "Are you there?"}],
        "two-systems": [
            {"role": "system", "content": "A"},
            {"role": "system", "content": "B"},
            user,
        ],
        "system-only": [{"role": "system", "content": "Only a system prompt."}],
        "system-last": [user, {"role": "system", "content": "late system"}],
        "developer": [{"role": "developer", "content": "Answer in French."}, user],
    }
    cases = [{"id": f"shape-{name}", "messages": messages} for name, messages in shapes.items()]
    for k, content in enumerate(parts):
        cases.append({"id": f"parts-{k}", "messages": [{"role": "user", "content": content}]})
        cases.append(
            {
                "id": f"parts-system-{k}",
                "messages": [{"role": "system", "content": content}, user],
            }
        )
    return cases


def tool_cases() -> list[Case]:
    """Requests with `tools` (added with the gateway's tools= rendering)."""
    return []


def conversation_cases() -> list[Case]:
    cases = _conversation_cases() + _shape_cases() + tool_cases()
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases


def text_cases() -> list[str]:
    """Plain-text prompts (/v1/completions, /v1/embeddings)."""
    return [*EDGE_TEXTS, *ASSISTANT_REPLIES]


def forwarded_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the gateway forwards them: `developer` becomes `system`
    (gateway/chat/legacy.py), so that is what the model server renders and bills."""
    return [{**m, "role": "system"} if m["role"] == "developer" else m for m in messages]


def vllm_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The forwarded messages as vLLM hands them to the chat template: text parts joined
    with a newline (vLLM's "string" content format, which these templates are detected as)."""
    out = []
    for message in forwarded_messages(messages):
        content = message.get("content")
        if isinstance(content, list):
            message = {**message, "content": "\n".join(part["text"] for part in content)}
        out.append(message)
    return out
