"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) as the gateway
speaks it: the wire models (protocol.py), the translation to and from chat completions
(translate.py, answer.py, stream.py) and Anthropic's error shape (errors.py). Pure: no HTTP types,
no I/O."""
