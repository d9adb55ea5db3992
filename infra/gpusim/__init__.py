"""gpusim: a simulated GPU endpoint that answers like vLLM's OpenAI-compatible server.

It serves every folder of a tokenizers directory that holds a ``tokenizer.json`` as a model
(the model id is the folder name) and is the upstream of the gateway's local stack, tests
and benchmarks::

    from gpusim import SimConfig, create_app
    app = create_app(SimConfig(tokenizers_dir=Path("../shared/tokenizers"), tpot_ms=20))

or ``python -m gpusim --port 8002 --tokenizers-dir DIR [--ttft-ms N] [--tpot-ms N]``.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/embeddings``,
``POST /v1/responses`` and ``GET /v1/responses/{id}`` (gpusim/responses.py),
``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (gpusim/messages.py),
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (below), ``GET /sim/stats``
(``requests``, ``completed``, ``cancelled``, ``active``) and ``POST /sim/reset`` (zeroes the
counters; ``active`` is a live gauge and stays).

The GPU, as vLLM's V1 engine behaves (each served model has its own engine, as if it ran
on its own vLLM server; gpusim/kvcache.py, engine.py, metrics.py):

- A KV cache of ``--num-gpu-blocks-override`` blocks (8192) of ``--block-size`` tokens
  (16). The prompt's token ids (the real tokenizer over the chat template, as counted) are
  hashed in full blocks, each hash chaining its parent's, its token ids and its extra keys
  (``sha256`` of the pickle, vLLM's default; ``cache_salt`` in the first block only; the
  first parent is ``sha256(PYTHONHASHSEED)`` when set). A lookup hits the longest run of
  cached leading blocks, at most ``(prompt_tokens - 1) // block_size`` of them. Freed blocks
  stay cached and are evicted least recently used first. ``--no-enable-prefix-caching``
  turns it off.
- A batch of at most ``--max-num-seqs`` sequences (256; a request with ``n`` choices, or
  several completion prompts, is that many). The others wait in a queue served first come
  first served, or with ``--scheduling-policy priority`` by the request's ``priority``
  (lower first, then arrival); a non-zero ``priority`` without it is vLLM's 400. The head
  of the queue also waits for KV blocks.
- Time: the first token comes ``ttft_ms + --prefill-ms-per-token x uncached prompt tokens``
  after admission; each further token takes ``tpot_ms + --decode-ms-per-seq x (running
  sequences - 1)``. With the defaults (0) nothing changes from a plain ``ttft_ms/tpot_ms``.
- ``usage.prompt_tokens_details.cached_tokens`` with ``--enable-prompt-tokens-details``
  (left out when nothing was cached, as vLLM does).
- ``--max-model-len N`` or ``model=N,...``: a prompt plus ``max_tokens`` over it (or a
  prompt that leaves no room) is vLLM's 400 (``This model's maximum context length is ...
  (parameter=input_tokens, value=N)``, ``param`` ``input_tokens``); without ``max_tokens``
  the generation stops where the context ends.
- ``/metrics`` (prometheus_client): ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``,
  ``vllm:prefix_cache_queries_total``, ``vllm:prefix_cache_hits_total`` and the
  ``vllm:time_to_first_token_seconds`` histogram, labelled ``model_name`` and ``engine``.

Simplifications: a sequence's blocks for its whole generation are taken at admission (it
knows its length), so nothing is ever preempted; vLLM allocates as it generates and
preempts (recomputes) when it runs out. A long prefill does not slow the other
sequences' decode steps. Image and audio placeholders count as prompt tokens but are not
hashed (vLLM adds their content hashes as extra keys).

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
- ``logprobs`` / ``top_logprobs`` return per-token entries (deterministic values); on
  ``/v1/completions`` ``logprobs`` is an integer (0-20), answered in the legacy
  ``tokens`` / ``token_logprobs`` / ``top_logprobs`` / ``text_offset`` shape;
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
