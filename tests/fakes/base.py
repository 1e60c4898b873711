"""A tiny HTTP server for fakes of outside APIs, on 127.0.0.1 with an ephemeral port.

Each fake subclasses `FakeServer` and implements `handle(request)`; the base runs a stdlib
`ThreadingHTTPServer` in a daemon thread, records every request, and plays scripted faults
(`fail`, `hang`, `malformed`) before the fake's own handler, so tests can drive the real SDKs
through 401, 429 + retry-after, 500, timeouts and broken bodies. `fake_fixture` makes a test
file's `fake` fixture from one.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import pytest

F = TypeVar("F", bound="FakeServer")


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def params(self) -> dict[str, Any]:
        """Query, form-encoded, JSON or multipart parameters, merged (files as bytes)."""
        params: dict[str, Any] = dict(self.query)
        ctype = self.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            data = self.json()
            if isinstance(data, dict):
                params.update(data)
        elif ctype.startswith("application/x-www-form-urlencoded"):
            params.update(dict(urllib.parse.parse_qsl(self.body.decode(), keep_blank_values=True)))
        elif ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + self.body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if part.get_filename() is not None:
                    params[str(name)] = payload
                else:
                    params[str(name)] = (payload or b"").decode()
        return params


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Response:
        headers = {"Content-Type": "application/json", **headers}
        return cls(status, json.dumps(data).encode(), headers)


@dataclass
class _Fault:
    response: Response | None  # None: the fake's own error body for `status`
    status: int
    headers: dict[str, str]
    delay: float
    times: int
    path_contains: str | None


class FakeServer:
    """Subclass and implement `handle`; `error_response` shapes the service's error bodies."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override -----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        return Response.json({"error": {"message": message}}, status, **headers)

    # -- scripting -------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str = "scripted failure",
        path_contains: str | None = None,
    ) -> None:
        """The next `times` matching requests answer `status` with the service's error body."""
        response = self.error_response(status, message, dict(headers or {}))
        self._add(_Fault(response, status, {}, 0.0, times, path_contains))

    def hang(self, seconds: float, *, times: int = 1, path_contains: str | None = None) -> None:
        """The next matching requests wait `seconds` before answering normally (a timeout)."""
        self._add(_Fault(None, 0, {}, seconds, times, path_contains))

    def malformed(
        self,
        *,
        times: int = 1,
        body: bytes = b'{"this is": not json',
        content_type: str = "application/json",
        path_contains: str | None = None,
    ) -> None:
        """The next matching requests get a 200 whose body is not what the service sends."""
        response = Response(200, body, {"Content-Type": content_type})
        self._add(_Fault(response, 200, {}, 0.0, times, path_contains))

    def play(
        self,
        script: dict[str, Any],
        *,
        secret_message: str,
        secret_status: int = 401,
        hang_times: int = 2,
        path_contains: str | None = None,
    ) -> None:
        """Script the next failure from a row of a test's failure table: `{"hang": seconds}`,
        `{"malformed": body or True, "type": content type}` or `{"status", "times", "headers"}`.
        An error of `secret_status` says `secret_message` (services echo the bad key: the test
        proves it never reaches the user); any other says "nope"."""
        if "hang" in script:
            self.hang(script["hang"], times=hang_times, path_contains=path_contains)
        elif "malformed" in script:
            body = script["malformed"]
            self.malformed(
                **({"body": body} if isinstance(body, bytes) else {}),
                content_type=script.get("type", "application/json"),
                path_contains=path_contains,
            )
        else:
            self.fail(
                script["status"],
                times=script.get("times", 1),
                headers=script.get("headers"),
                message=secret_message if script["status"] == secret_status else "nope",
                path_contains=path_contains,
            )

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, request: Request) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains in request.path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # -- running ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self.on_stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def on_stop(self) -> None:
        """Wake handlers that are waiting (long polls)."""

    def sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, or less if the server stops."""
        self._stopping.wait(seconds)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command,
            path=urllib.parse.unquote(parsed.path),
            query=dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        try:
            if fault is not None and fault.response is not None:
                response = fault.response
            else:
                if fault is not None and fault.delay:
                    self.sleep(fault.delay)
                response = self.handle(request)
        except Exception as exc:  # a bug in a fake must show up in the test, not hang it
            response = Response(500, f"fake {self.name} crashed: {exc!r}".encode())
        if response.delay:
            self.sleep(response.delay)
        try:
            handler.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            handler.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): that is the point of a hang


def fake_fixture(make: Callable[[], F]) -> Any:
    """A test file's `fake` fixture: the service fake `make` builds, serving for one test."""

    def fake() -> Iterator[F]:
        with make() as server:
            yield server

    return pytest.fixture(name="fake")(fake)
