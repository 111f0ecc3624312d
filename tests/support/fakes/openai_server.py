"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 (ephemeral port), for the groq tests.

    with FakeOpenAI(key="k") as srv:
        env["GROQ_BASE_URL"] = srv.base_url     # http://127.0.0.1:PORT/openai/v1
        ...
        srv.requests  # [(path, headers, body), ...]

Set ``srv.status`` (e.g. 429) to answer with a Groq-style error, ``srv.delay`` to answer late,
``srv.reply`` for the assistant's text, ``srv.retry_after`` for a Retry-After header on a 429.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERRORS = {
    401: {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"},
    429: {
        "message": "Rate limit reached for model `llama-3.3-70b-versatile` on tokens per minute (TPM)",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    },
    500: {"message": "Internal server error", "type": "internal_server_error"},
}


class FakeOpenAI:
    def __init__(self, key: str = "test-key", reply: str | None = None) -> None:
        self.key, self.reply = key, reply
        self.status = 200
        self.delay = 0.0
        self.retry_after: str | None = None
        self.requests: list[tuple[str, dict, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/openai/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, headers: dict, body: Any) -> tuple[int, dict]:
        self.requests.append((path, headers, body))
        time.sleep(self.delay)
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"Unknown request URL: POST {path}", "type": "invalid_request_error"}}
        if headers.get("Authorization") != f"Bearer {self.key}":
            return 401, {"error": ERRORS[401]}
        if self.status != 200:
            return self.status, {"error": ERRORS.get(self.status, ERRORS[500])}
        prompt = body["messages"][-1]["content"]
        text = self.reply or ("pong" if "pong" in prompt.lower() else f"groq did: {prompt}")
        return 200, {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = None
                status, doc = fake.answer(self.path, dict(self.headers), body)
                data = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if status == 429 and fake.retry_after:
                        self.send_header("Retry-After", fake.retry_after)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout/cancel tests)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
