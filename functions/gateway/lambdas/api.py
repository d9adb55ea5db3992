"""Lambda entry point of ApiFunction: the gateway app through Mangum, buffered.

Chat completions are served by StreamFunction instead (functions/run.sh: the Lambda Web
Adapter in front of uvicorn), because Mangum never streams. Building the app does no
network I/O; clients are created lazily on the first request.
"""

from __future__ import annotations

from mangum import Mangum

from gateway.app import create_app

handler = Mangum(create_app(), lifespan="off")
