#!/bin/bash
# StreamFunction's handler. The Lambda Web Adapter's wrapper (AWS_LAMBDA_EXEC_WRAPPER=
# /opt/bootstrap) runs this script; the adapter waits until GET $AWS_LWA_READINESS_CHECK_PATH
# answers on $AWS_LWA_PORT, then forwards each invocation to uvicorn as an HTTP request and
# streams the response back (AWS_LWA_INVOKE_MODE=response_stream).
set -euo pipefail

# The managed runtime does not put the function's packages on the path for a script, so
# add them: the code and its dependencies in $LAMBDA_TASK_ROOT (/var/task), layers'
# python/ in /opt/python, and the runtime's own packages in $LAMBDA_RUNTIME_DIR.
export PATH="${PATH}:${LAMBDA_TASK_ROOT:-/var/task}/bin"
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python:${LAMBDA_RUNTIME_DIR:-/var/runtime}${PYTHONPATH:+:${PYTHONPATH}}"

# Upstream credentials, by reference only: the Secrets Manager secret UPSTREAM_SECRET_ARN
# holds a JSON object {"UPSTREAM_API_KEY": "..."}; each entry becomes an environment
# variable of the app (the models config's api_key_env names them). Read once, at init;
# a failure here fails the init, loudly.
if [[ -n "${UPSTREAM_SECRET_ARN:-}" ]]; then
    exports="$(python - <<'PY'
import json
import os
import re
import shlex
import sys

import botocore.session

client = botocore.session.get_session().create_client("secretsmanager")
arn = os.environ["UPSTREAM_SECRET_ARN"]
try:
    values = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
except (KeyError, ValueError) as exc:
    sys.exit(f"run.sh: {arn} must hold a JSON object of credentials ({exc!r})")
if not isinstance(values, dict):
    sys.exit(f"run.sh: {arn} must hold a JSON object of credentials")
reserved = re.compile(r"^(AWS_|LAMBDA_|LD_|PYTHON|_)|^(PATH|HOME)$")
for name, value in values.items():
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or reserved.match(name):
        sys.exit(f"run.sh: {arn}: {name!r} cannot be used as an environment variable")
    print(f"export {name}={shlex.quote(str(value))}")
PY
)"
    eval "${exports}"
    unset exports
fi

# uvicorn's limits here (docs/SECURITY.md, "The HTTP server's limits"). Its only client is
# the Lambda Web Adapter on 127.0.0.1, one invocation at a time:
# - the request head's size is bounded before the function: API Gateway refuses a REST
#   request whose request line and headers pass 10,240 bytes, and an invocation's payload
#   is at most 6 MB. So the parser stays httptools (uvicorn's default here): h11, which
#   caps an incomplete head (make run: infra/devstack/server.py), cost 30 % more CPU per
#   request in a side-by-side run;
# - keep-alive 600 s: the adapter reuses its connections across invocations, and the
#   environment may be frozen between them; a short timeout would close a connection the
#   adapter is about to reuse;
# - limit-concurrency: past 64 connections or tasks a request is answered 503, not queued
#   (the adapter sends one invocation at a time; this bounds anything else).
log_level="${LOG_LEVEL:-INFO}"
exec python -m uvicorn --factory gateway.app:create_app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-${PORT:-8080}}" \
    --log-level "${log_level,,}" --no-access-log \
    --timeout-keep-alive 600 --limit-concurrency 64
