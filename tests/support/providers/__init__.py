"""A fake of the model providers the agent CLIs call, on 127.0.0.1 (ephemeral port).

One server speaks every API; each API is a module here with a ``ROUTES`` list of
``(method, path regex, handler)``; a handler gets ``(fake, request)`` and returns a
:class:`Json` or :class:`Sse` answer, or None for "not mine" (the next route is tried).

    with ProviderFake() as fake:
        fake.mode = "edit"            # what the next requests get: ok, edit, auth, rate_limit, usage_limit, ...
        env["ANTHROPIC_BASE_URL"] = fake.url
        ...
        fake.requests                  # every request seen: method, path, query, headers, body

Modes are strings each API module interprets (see its docstring); ``fake.reply`` is the
assistant's text for ``ok``; ``fake.edit`` is ``(relative path, content)`` for ``edit``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: Any  # parsed JSON, or the raw text when it is not JSON
    raw: bytes = b""

    def text(self) -> str:
        """The whole request body as text (to look for a prompt in it)."""
        return self.raw.decode("utf-8", errors="replace")


@dataclass
class Json:
    status: int
    doc: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sse:
    """A text/event-stream answer: ``(event name or None, data)`` pairs; data dicts are JSON-encoded."""

    events: Iterable[tuple[str | None, Any]]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Answer = Json | Sse
Handler = Callable[["ProviderFake", Request], Answer | None]
Route = tuple[str, str, Handler]


class ProviderFake:
    """The HTTP server; ``routes`` default to every API module's."""

    def __init__(self, routes: list[Route] | None = None) -> None:
        import re

        if routes is None:
            routes = all_routes()
        self._routes = [(m, re.compile(p), h) for m, p, h in routes]
        self.mode = "ok"
        self.reply = "pong"
        self.edit: tuple[str, str] = ("hello.txt", "hello from the agent\n")
        self.key = "test-key"  # the API key the fake accepts
        self.delay = 0.0
        self.requests: list[Request] = []
        self.state: dict[str, Any] = {}  # per-API scratch (e.g. which turn of a tool-use exchange)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (no trailing slash, no path)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ProviderFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def seen(self, path_part: str) -> list[Request]:
        return [r for r in self.requests if path_part in r.path]

    def answer(self, req: Request) -> Answer:
        with self.lock:
            self.requests.append(req)
        if self.delay:
            time.sleep(self.delay)
        for method, pattern, handler in self._routes:
            if method == req.method and pattern.search(req.path):
                got = handler(self, req)
                if got is not None:
                    return got
        return Json(404, {"error": {"message": f"fake provider: no route for {req.method} {req.path}"}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.command, url.path, parse_qs(url.query), headers, body, raw)
                try:
                    self._send(fake.answer(req))
                except OSError:
                    pass  # the client gave up

            def _send(self, ans: Answer) -> None:
                if isinstance(ans, Json):
                    data = json.dumps(ans.doc).encode()
                    self.send_response(ans.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in ans.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(ans.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                for event, data in ans.events:
                    payload = data if isinstance(data, str) else json.dumps(data)
                    chunk = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
                    b = chunk.encode()
                    self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_POST = do_GET = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return H


def all_routes() -> list[Route]:
    """Every API module's routes; anthropic's last, as it ends in catch-alls for the CLI's side calls.
    ``GET /v1/models`` is ambiguous across APIs: a test of one CLI serves that API's ROUTES alone."""
    import importlib

    routes: list[Route] = []
    for name in ("gemini", "openai_responses", "openai_chat", "anthropic"):
        mod = importlib.import_module(f"support.providers.{name}")
        routes += mod.ROUTES
    return routes
