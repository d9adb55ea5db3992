"""API Gateway REST API (v1) proxy events and a Lambda context, as the Lambda runtime hands
them to a handler (tests/test_lambda_handler.py)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

API_ID = "abc123defg"
HOST = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
# API Gateway's own trace header (its segment is the parent), unlike the runtime's.
API_GATEWAY_TRACE = "Root=1-6740a1b2-fedcba9876543210fedcba98;Parent=1111111111111111;Sampled=1"


def rest_api_event(
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    base64_body: bool = False,
    stage: str = "prod",
) -> dict[str, Any]:
    """What API Gateway (REST API, Lambda proxy integration on `/{proxy+}` ANY, default
    execute-api endpoint) sends: `path` without the stage, `requestContext.path` with it."""
    request_id = str(uuid.uuid4())
    all_headers = {
        "Accept": "application/json",
        "Host": HOST,
        "User-Agent": "OpenAI/Python 1.50.0",
        "X-Amzn-Trace-Id": API_GATEWAY_TRACE,
        "X-Forwarded-For": "192.0.2.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    encoded: str | None = None
    if body is not None:
        encoded = base64.b64encode(body).decode() if base64_body else body.decode()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "x1y2z3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": "Ab1CdEfGhIjKlMn=",
            "requestTime": "22/Nov/2026:03:14:28 +0000",
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": 1795317268000,
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": "192.0.2.1",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": "OpenAI/Python 1.50.0",
                "user": None,
            },
            "domainName": HOST,
            "deploymentId": "d3pl0y",
            "apiId": API_ID,
        },
        "body": encoded,
        "isBase64Encoded": base64_body,
    }


class LambdaContext:
    function_name = "gateway-ApiFunction"
    function_version = "1"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gateway-ApiFunction"
    log_group_name = "/aws/lambda/gateway-ApiFunction"
    log_stream_name = "2026/11/22/[1]0123456789abcdef"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def chat_event(secret: str, *, content: str = "Say hello.", **kwargs: Any) -> dict[str, Any]:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": content}]}
    body["max_tokens"] = 8
    return rest_api_event(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {secret}"},
        **kwargs,
    )
