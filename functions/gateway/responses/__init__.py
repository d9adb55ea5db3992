"""OpenAI's Responses API (`/v1/responses`) as the gateway speaks it: the wire models
(protocol.py) and the translation to and from chat completions (translate.py, answer.py,
stream.py).
Pure: no HTTP types, no I/O."""
