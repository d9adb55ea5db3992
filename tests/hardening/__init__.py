"""The hardening suite (issue 15, item 7): the gateway fuzzed as an outsider would, over
real HTTP on 127.0.0.1, against the simulated GPU endpoint and moto's DynamoDB.

- test_schemathesis.py: schemathesis's positive and negative cases for every operation in
  the gateway's own /openapi.json, with a valid key and served model names.
- test_hypothesis_bodies.py: hypothesis-generated chat bodies (valid-ish with the
  simulated endpoint's fault knobs, hostile, raw non-objects, a key whose limits run out)
  and near-miss Authorization headers.
- audit.py: what every case must satisfy: no 422; no 5xx but 502/503/504 from an injected
  upstream fault; OpenAI's error shape (checked against OpenAI's ErrorResponse schema),
  stream error events included; no secret and no upstream error text in any response, no
  secret in any log; exactly one usage record per authenticated chat request; the key's
  `month#YYYY-MM` counter equal to the sum of its records' tokens (reservations settled).

Bounded (about 480 cases, about a minute) and deterministic (derandomized, no example
database), so it runs in `make test`. Each test prints its figures as a
`[hardening] ...` line: cases, 5xx, records expected and found, tokens, statuses.
"""
