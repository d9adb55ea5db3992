"""gpusim: a simulated GPU endpoint that answers like vLLM's OpenAI-compatible server.

It serves every folder of a tokenizers directory that holds a ``tokenizer.json`` as a model
(the model id is the folder name) and is the upstream of the gateway's local stack, tests
and benchmarks::

    from gpusim import SimConfig, create_app
    app = create_app(SimConfig(tokenizers_dir=Path("../shared/tokenizers"), tpot_ms=20))

or ``python -m gpusim --port 8002 --tokenizers-dir DIR [--ttft-ms N] [--tpot-ms N]``.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/responses`` and
``GET /v1/responses/{id}`` (gpusim/responses.py), ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (gpusim/messages.py), ``GET /v1/models``, ``GET /health``,
``GET /sim/stats`` (``requests``, ``completed``, ``cancelled``, ``active``) and
``POST /sim/reset`` (zeroes the counters; ``active`` is a live gauge and stays).

Behaviour, as vLLM:

- ``usage.prompt_tokens`` is the length of transformers'
  ``apply_chat_template(messages, add_generation_prompt=True, tokenize=True)``; list
  content parts are joined with ``"\\n"`` first. A model without a chat template (gpt2)
  answers 400 unless the request carries ``chat_template``. ``tools`` and
  ``chat_template_kwargs`` reach the template.
- The completion is a fixed English paragraph, rotated to a start word chosen by ``seed``
  (default 0) and the choice index, tokenized with the model's tokenizer and streamed one
  token at a time with incremental detokenization (nothing is sent while the text ends in an
  incomplete UTF-8 character). A natural completion is ``completion_tokens`` tokens, the
  last being EOS, which counts in usage but adds no text.
- ``max_completion_tokens`` / ``max_tokens`` cap it (``finish_reason`` "length");
  ``stop`` cuts the text before the stop string (counting tokens up to the one that
  completed it; while streaming, len(longest stop) - 1 characters are held back);
  ``n``, ``min_tokens``, ``ignore_eos``, ``stream``, ``stream_options.include_usage``
  are honoured; ``temperature`` and the rest are accepted and ignored. Choices carry vLLM's
  ``stop_reason``.
- Tools, as vLLM started with ``--enable-auto-tool-choice --tool-call-parser P`` (P:
  ``hermes`` for Qwen, ``llama3_json`` for Llama, ``mistral`` for Mistral, by model id):
  with ``tools`` and ``tool_choice`` ``required`` or a named function (or ``auto`` and
  ``sim.tool_calls``), the model generates the call in its family's own format (every
  token counted), and the server returns it parsed (``message.tool_calls``,
  ``finish_reason`` ``tool_calls``, ``stop`` for a named choice) or streams it as
  ``delta.tool_calls`` fragments: name first, then the argument JSON piece by piece.
  ``parallel_tool_calls: false`` keeps one call. Arguments fill every property of the
  tool's ``parameters`` schema (first enum value, a word for strings).
- ``logprobs`` / ``top_logprobs`` return per-token entries (deterministic values);
  ``response_format`` ``json_object`` / ``json_schema`` makes the output one JSON object.
- Image / audio parts are accepted by models listed in ``SimConfig.multimodal``
  (``--multimodal``), each adding a fixed number of prompt tokens (256 per image, 188 per
  audio part); other models answer 400.
- A client that disconnects while its request is generating (streamed or not) stops the
  generation at once and counts in ``cancelled``.

Per-request overrides and fault injection: an extra body field ``"sim": {...}``:

- ``ttft_ms``, ``tpot_ms``: time to first token / per further token (default: config).
- ``completion_tokens``: natural completion length (default: config).
- ``fail_status``: answer at once with that HTTP status (400-599) and an error body
  ``{"error": {"message", "type", "param", "code"}}``; ``retry_after`` (seconds) adds a
  ``Retry-After`` header to it.
- ``fail_after_tokens``: streaming: after N tokens send ``data: {"error": {...}}`` and end
  the stream without a finish chunk, usage or ``[DONE]``; non-streaming: HTTP 500 after the
  time N tokens take. The failure happens even if the completion is shorter than N.
- ``hang``: true: never answer; the request ends only when the client gives up (counts as
  cancelled then).
- ``omit_usage``: true: report no usage (no ``usage`` field, no usage chunk).
- ``tool_calls``: how many tool calls the model makes under ``tool_choice`` ``auto``
  (default 0: it answers in text) or ``required`` (at least 1).
"""

from gpusim.app import create_app
from gpusim.config import SimConfig

__all__ = ["SimConfig", "create_app"]
