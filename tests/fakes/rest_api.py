"""A tiny REST API on 127.0.0.1 (stdlib http.server in a daemon thread) for the execute-style
plugin tests.

GET /posts -> 200 [posts]; GET /posts/<id> -> 200 post or 404; anything else -> 404.
Every request is recorded as (path, Authorization header or None).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POSTS = {1: {"id": 1, "title": "first"}, 2: {"id": 2, "title": "second"}}


class FakeRestApi:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


def _handler(api_ref: list[FakeRestApi]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api_ref[0].requests.append((self.path, self.headers.get("Authorization")))
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            status, body = 404, {"error": "not found", "path": self.path}
            if parts == ["posts"]:
                status, body = 200, {"items": list(POSTS.values())}
            elif len(parts) == 2 and parts[0] == "posts" and parts[1].isdigit():
                post = POSTS.get(int(parts[1]))
                if post is not None:
                    status, body = 200, post
            elif parts == ["whoami"]:
                status, body = 200, {"authorization": self.headers.get("Authorization")}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_rest_api() -> Iterator[FakeRestApi]:
    ref: list[FakeRestApi] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    server.daemon_threads = True
    api = FakeRestApi(server)
    ref.append(api)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="fake-rest-api", daemon=True
    )
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
