"""A local stand-in for the Hugging Face Hub's file URLs, serving tokenizer folders.

`GET /{org}/{name}/resolve/{revision}/{file}` answers with `repos[f"{org}/{name}"] / file`
(404 when the repo or file is unknown), with the Content-Length the Hub sends. Every
request is recorded as (path, Authorization header).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class LocalHub:
    url: str
    repos: dict[str, Path]
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@contextmanager
def local_hub(repos: dict[str, Path]) -> Iterator[LocalHub]:
    hub = LocalHub(url="", repos=repos)

    class Handler(BaseHTTPRequestHandler):
        def _file(self) -> Path | None:
            parts = [urllib.parse.unquote(p) for p in self.path.lstrip("/").split("/")]
            if len(parts) != 5 or parts[2] != "resolve" or "/" in parts[4]:
                return None
            folder = hub.repos.get(f"{parts[0]}/{parts[1]}")
            path = folder / parts[4] if folder is not None else None
            return path if path is not None and path.is_file() else None

        def do_GET(self) -> None:
            hub.requests.append((self.path, self.headers.get("Authorization")))
            path = self._file()
            if path is None:
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
