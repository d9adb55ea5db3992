#!/bin/bash
# StreamFunction's handler. The Lambda Web Adapter's wrapper (AWS_LAMBDA_EXEC_WRAPPER=
# /opt/bootstrap) runs this script; the adapter waits until GET $AWS_LWA_READINESS_CHECK_PATH
# answers on $AWS_LWA_PORT, then forwards each invocation to uvicorn as an HTTP request and
# streams the response back (AWS_LWA_INVOKE_MODE=response_stream).
#
# The managed runtime does not put the function's packages on the path for a script, so
# add them: the code and its dependencies in $LAMBDA_TASK_ROOT (/var/task), layers'
# python/ in /opt/python, and the runtime's own packages in $LAMBDA_RUNTIME_DIR.
set -euo pipefail

export PATH="${PATH}:${LAMBDA_TASK_ROOT:-/var/task}/bin"
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python:${LAMBDA_RUNTIME_DIR:-/var/runtime}${PYTHONPATH:+:${PYTHONPATH}}"

log_level="${LOG_LEVEL:-INFO}"
exec python -m uvicorn --factory gateway.app:create_app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-${PORT:-8080}}" \
    --log-level "${log_level,,}" --no-access-log \
    --timeout-keep-alive 600
