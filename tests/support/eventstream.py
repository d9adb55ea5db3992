"""A stand-in for the SageMaker runtime API on 127.0.0.1 that writes real AWS event-stream
frames, for botocore to parse (moto does not implement InvokeEndpointWithResponseStream).

Each endpoint gets a scripted reply: for `/invocations`, a `Reply`; for
`/invocations-response-stream`, either a `Reply` (an error before the stream starts) or
a list of steps: `bytes` (written as one HTTP chunk, so one frame can be split across
chunks or several frames sent in one) and `Wait` (a pause that ends early if the client
closes the connection, which the server records).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_STRING = 7  # event-stream header value type: utf-8 string, 2-byte length


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers,
    payload, message CRC32."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack("!I", zlib.crc32(message))


def payload_part(data: bytes) -> bytes:
    return frame(
        {
            ":message-type": "event",
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
        },
        data,
    )


def exception_event(kind: str, message: str, *, error_code: str | None = None) -> bytes:
    """A modeled error event (ModelStreamError, InternalStreamFailure), as SageMaker sends
    them: `:message-type` exception, `:exception-type` the shape's name, a JSON body."""
    body: dict[str, str] = {"Message": message}
    if error_code:
        body["ErrorCode"] = error_code
    return frame(
        {
            ":message-type": "exception",
            ":exception-type": kind,
            ":content-type": "application/json",
        },
        json.dumps(body).encode(),
    )


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line: to trip a client's read timeout


def json_reply(body: Any) -> Reply:
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def aws_error(status: int, code: str, body: dict[str, Any]) -> Reply:
    """An error the way the SageMaker runtime writes one: the code in x-amzn-ErrorType
    (with the namespace suffix botocore strips), the modeled fields in a JSON body."""
    return Reply(
        status,
        json.dumps(body).encode(),
        {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/",
        },
    )


def model_error(original_status: int, original_body: Any) -> Reply:
    """The container answered `original_status`: SageMaker's 424 ModelError."""
    original = original_body if isinstance(original_body, str) else json.dumps(original_body)
    return aws_error(
        424,
        "ModelError",
        {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x",
            "Message": f'Received client error ({original_status}) from primary with message "{original}".',
            "OriginalMessage": original,
            "OriginalStatusCode": original_status,
        },
    )


@dataclass
class Wait:
    """Pause up to `seconds`; if the client closes the connection meanwhile, record it and
    end the response."""

    seconds: float


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamOutcome:
    finished: bool = False  # every step written
    client_closed: bool = False  # the client dropped the connection first
    done: threading.Event = field(default_factory=threading.Event)


class SageMakerStub:
    def __init__(self) -> None:
        self.invocations: dict[str, Reply] = {}
        self.streams: dict[str, Reply | list[bytes | Wait]] = {}
        self.requests: list[Request] = []
        self.outcomes: dict[str, StreamOutcome] = {}
        self.url = ""

    def add_invocation(self, endpoint: str, reply: Reply) -> None:
        self.invocations[endpoint] = reply

    def add_stream(self, endpoint: str, script: Reply | list[bytes | Wait]) -> None:
        self.streams[endpoint] = script
        self.outcomes[endpoint] = StreamOutcome()

    def outcome(self, endpoint: str, timeout: float = 5.0) -> StreamOutcome:
        """How the stream to `endpoint` ended, once it has."""
        outcome = self.outcomes[endpoint]
        if not outcome.done.wait(timeout):
            raise AssertionError(f"the stream to {endpoint} is still open")
        return outcome


def _client_gone(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionError, OSError):
        return True


def _handler(stub: SageMakerStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            stub.requests.append(Request(self.path, dict(self.headers.items()), body))
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "endpoints":
                self._reply(Reply(404, b"{}"))
                return
            _, name, action = parts
            if action == "invocations" and name in stub.invocations:
                self._reply(stub.invocations[name])
            elif action == "invocations-response-stream" and name in stub.streams:
                script = stub.streams[name]
                if isinstance(script, Reply):
                    self._reply(script)
                else:
                    self._stream(name, script)
            else:
                self._reply(
                    aws_error(400, "ValidationError", {"message": f"Endpoint {name} not found."})
                )

        def _reply(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("x-amzn-RequestId", "stub-request")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        def _stream(self, name: str, steps: list[bytes | Wait]) -> None:
            outcome = stub.outcomes[name]
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("X-Amzn-SageMaker-Content-Type", "text/event-stream")
            self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
            self.send_header("x-amzn-RequestId", "stub-request")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for step in steps:
                    if isinstance(step, Wait):
                        deadline = time.monotonic() + step.seconds
                        while (left := deadline - time.monotonic()) > 0:
                            readable, _, _ = select.select([self.connection], [], [], left)
                            if readable and _client_gone(self.connection):
                                outcome.client_closed = True
                                self.close_connection = True
                                return
                        continue
                    self.wfile.write(f"{len(step):x}\r\n".encode() + step + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                outcome.finished = True
            except (BrokenPipeError, ConnectionResetError):
                outcome.client_closed = True
                self.close_connection = True
            finally:
                outcome.done.set()

    return Handler


@contextmanager
def sagemaker_stub() -> Iterator[SageMakerStub]:
    stub = SageMakerStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
