"""The OpenAI Responses API (``POST /v1/responses``, streamed), as the real Codex CLI calls it.

Modes (``fake.mode``):

``ok``                  a streamed assistant message with the text ``fake.reply``, and usage
``edit``                a function call to codex's shell tool (``exec_command`` in codex 0.171, else
                        ``shell``) writing ``fake.edit[1]`` to ``fake.edit[0]`` in its cwd; once the call's
                        output comes back, a final message ``fake.reply``
``auth``                401 ``invalid_api_key`` (also what any request with the wrong bearer gets; one with
                        no bearer at all gets OpenAI's 401 "You didn't provide an API key. ...")
``rate_limit``          429 ``rate_limit_exceeded`` with OpenAI's ``x-ratelimit-*`` headers
``usage_limit``         429 ``usage_limit_reached`` with ``resets_at`` / ``resets_in_seconds`` (the ChatGPT
                        backend's shape: codex prints "You've hit your usage limit. ... Try again at ...")
``insufficient_quota``  429 ``insufficient_quota`` "You exceeded your current quota, ..." (``credit``: the same)
``quota_failed``        200, then a ``response.failed`` event with code ``insufficient_quota``
``server_error``        500 ``server_error``
``overloaded``          503 ``server_is_overloaded`` (codex 0.171: "Selected model is at capacity. ...", at once)
``edit_patch``          like ``edit``, but through codex's freeform ``apply_patch`` tool (a custom tool call)
``bad_request``         400 ``invalid_request_error`` (a non-limit error codex does not retry)
``stream_cut``          200, ``response.created``, then the stream ends without ``response.completed``

Knobs in ``fake.state``: ``usage`` (the usage object sent with ``response.completed``),
``resets_at`` (epoch seconds for ``usage_limit``; default now + 2 hours, on a whole minute; None: not
sent), ``plan_type`` (``usage_limit``'s plan, default ``plus``; None: not sent).

:func:`cli_env` writes ``$CODEX_HOME/config.toml`` pointing codex at the fake and returns the
child environment. Serve these routes alone (``ProviderFake(ROUTES)``): with every module's routes,
anthropic's catch-all ``^/(api|v1)/`` comes first and answers ``POST /v1/responses`` with ``{}``.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

from support.providers import Json, ProviderFake, Request, Route, Sse

MODEL = "gpt-5.5"  # a model in codex 0.171's bundled catalog (others get "Model metadata ... not found")
KEY_ENV = "OPENAI_API_KEY"
PROVIDER_ID = "fleetq_fake"

DEFAULT_USAGE: dict[str, Any] = {
    "input_tokens": 1234,
    "input_tokens_details": {"cached_tokens": 1000},
    "output_tokens": 56,
    "output_tokens_details": {"reasoning_tokens": 7},
    "total_tokens": 1290,
}

AUTH_ERROR = {
    "error": {
        "message": "Incorrect API key provided: wrong-key. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
NO_KEY_ERROR = {
    "error": {
        "message": "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
        "accessing the API from your browser and are prompted for a username and password. You can obtain an API key "
        "from https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
RATE_LIMIT_ERROR = {
    "error": {
        "message": f"Rate limit reached for {MODEL} in organization org-fake on tokens per min (TPM): Limit 30000, "
        "Used 29500, Requested 1290. Please try again in 1.58s. Visit https://platform.openai.com/account/rate-limits "
        "to learn more.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
QUOTA_ERROR = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}
SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}
BAD_REQUEST = {
    "error": {
        "message": "Invalid value for 'input': the fake provider refuses this request.",
        "type": "invalid_request_error",
        "param": "input",
        "code": "invalid_value",
    }
}


def _req_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def _rate_headers(reset: str = "1.58s") -> dict[str, str]:
    return {
        "x-request-id": _req_id(),
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-reset-tokens": reset,
        "retry-after": "2",
    }


def usage_limit_resets_at(fake: ProviderFake) -> int | None:
    """The epoch second ``usage_limit`` says the limit resets at (on a whole minute: codex prints minutes);
    ``fake.state["resets_at"] = None``: not said."""
    if "resets_at" not in fake.state:
        fake.state["resets_at"] = (int(time.time()) // 60 + 120) * 60
    at = fake.state["resets_at"]
    return None if at is None else int(at)


def _usage_limit(fake: ProviderFake) -> Json:
    resets_at = usage_limit_resets_at(fake)
    err: dict[str, Any] = {"type": "usage_limit_reached", "message": "The usage limit has been reached"}
    plan = fake.state.get("plan_type", "plus")
    if plan is not None:
        err["plan_type"] = plan
    if resets_at is not None:
        err["resets_at"] = resets_at
        err["resets_in_seconds"] = max(0, resets_at - int(time.time()))
    headers = {
        "x-request-id": _req_id(),
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-secondary-used-percent": "42",
        "x-codex-secondary-window-minutes": "10080",
    }
    if resets_at is not None:
        headers["x-codex-primary-reset-at"] = str(resets_at)
    return Json(429, {"error": err}, headers)


# ---------------------------------------------------------------- streamed answers


def _message_item(text: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _response(resp_id: str, model: str, status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
    return {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
    }


def _created(resp_id: str, model: str) -> tuple[str, dict[str, Any]]:
    return "response.created", {"type": "response.created", "response": _response(resp_id, model, "in_progress", [])}


def _stream(fake: ProviderFake, model: str, items: list[dict[str, Any]]) -> Sse:
    """response.created, each item added (a message's text as one delta) and done, response.completed."""
    resp_id = "resp_" + uuid.uuid4().hex[:24]
    events: list[tuple[str | None, Any]] = []

    def ev(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

    ev("response.created", response=_response(resp_id, model, "in_progress", []))
    ev("response.in_progress", response=_response(resp_id, model, "in_progress", []))
    for n, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            ev("response.output_item.added", output_index=n, item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": []}
            ev("response.content_part.added", item_id=item["id"], output_index=n, content_index=0, part=part)
            ev("response.output_text.delta", item_id=item["id"], output_index=n, content_index=0, delta=text)
            ev("response.output_text.done", item_id=item["id"], output_index=n, content_index=0, text=text)
            ev("response.content_part.done", item_id=item["id"], output_index=n, content_index=0,
               part={**part, "text": text})  # fmt: skip
        else:
            ev("response.output_item.added", output_index=n, item={**item, "status": "in_progress"})
        ev("response.output_item.done", output_index=n, item=item)
    usage = fake.state.get("usage", DEFAULT_USAGE)
    ev("response.completed", response=_response(resp_id, model, "completed", items, usage))
    return Sse(events, headers={"x-request-id": _req_id()})


def _tool_names(body: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name"):
            names.add(str(tool["name"]))
    return names


def _tool_outputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool outputs since the last user message (a resumed session carries earlier turns' ones)."""
    items = [it for it in body.get("input") or [] if isinstance(it, dict)]
    users = [i for i, it in enumerate(items) if it.get("role") == "user"]
    return [
        it
        for it in items[users[-1] if users else 0 :]
        if it.get("type") in ("function_call_output", "custom_tool_call_output")
    ]


def _edit_call(body: dict[str, Any], path: str, content: str) -> dict[str, Any]:
    """A function call to the shell tool codex declared, writing ``content`` to ``path``."""
    q = shlex.quote(path)
    script = f'mkdir -p "$(dirname {q})" && printf %s {shlex.quote(content)} > {q}'
    names = _tool_names(body)
    call_id = "call_" + uuid.uuid4().hex[:20]
    args: dict[str, Any]
    if "exec_command" in names or not names & {"shell", "shell_command", "local_shell"}:
        name, args = "exec_command", {"cmd": script}
    elif "shell_command" in names:
        name, args = "shell_command", {"command": script}
    else:
        name, args = "shell", {"command": ["bash", "-lc", script]}
    return {
        "type": "function_call",
        "id": "fc_" + uuid.uuid4().hex[:20],
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(args),
    }


def _patch_call(path: str, content: str) -> dict[str, Any]:
    """A freeform ``apply_patch`` call adding ``path`` with ``content`` (a final newline is implied)."""
    lines = "".join(f"+{line}\n" for line in content.removesuffix("\n").split("\n"))
    patch = f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"
    return {
        "type": "custom_tool_call",
        "id": "ctc_" + uuid.uuid4().hex[:20],
        "status": "completed",
        "call_id": "call_" + uuid.uuid4().hex[:20],
        "name": "apply_patch",
        "input": patch,
    }


def responses(fake: ProviderFake, req: Request) -> Json | Sse | None:
    auth = req.headers.get("authorization", "")
    if not auth:
        return Json(401, NO_KEY_ERROR, {"x-request-id": _req_id()})
    if auth != f"Bearer {fake.key}" or fake.mode == "auth":
        return Json(401, AUTH_ERROR, {"x-request-id": _req_id()})
    body = req.body if isinstance(req.body, dict) else {}
    model = str(body.get("model") or MODEL)
    mode = fake.mode
    if mode == "rate_limit":
        return Json(429, RATE_LIMIT_ERROR, _rate_headers())
    if mode == "usage_limit":
        return _usage_limit(fake)
    if mode in ("insufficient_quota", "credit"):
        return Json(429, QUOTA_ERROR, {"x-request-id": _req_id()})
    if mode == "server_error":
        return Json(500, SERVER_ERROR, {"x-request-id": _req_id()})
    if mode == "overloaded":
        doc = {"message": "The server is overloaded.", "type": "server_error", "code": "server_is_overloaded"}
        return Json(503, {"error": doc}, {"x-request-id": _req_id()})
    if mode == "bad_request":
        return Json(400, BAD_REQUEST, {"x-request-id": _req_id()})
    if mode == "quota_failed":
        resp_id = "resp_" + uuid.uuid4().hex[:24]
        failed = {**_response(resp_id, model, "failed", []), "error": {**QUOTA_ERROR["error"]}}
        return Sse([_created(resp_id, model), ("response.failed", {"type": "response.failed", "response": failed})])
    if mode == "stream_cut":
        resp_id = "resp_" + uuid.uuid4().hex[:24]
        return Sse([_created(resp_id, model)])
    msg_id = "msg_" + uuid.uuid4().hex[:24]
    if mode == "edit" and not _tool_outputs(body):
        path, content = fake.edit
        return _stream(fake, model, [_edit_call(body, path, content)])
    if mode == "edit_patch" and not _tool_outputs(body):
        path, content = fake.edit
        return _stream(fake, model, [_patch_call(path, content)])
    return _stream(fake, model, [_message_item(fake.reply, msg_id)])


def models(fake: ProviderFake, req: Request) -> Json:
    """GET /v1/models: both shapes codex knows (``models`` for its catalog, ``data`` for OpenAI's list)."""
    return Json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "openai"}], "models": []})


def no_websocket(fake: ProviderFake, req: Request) -> Json:
    """GET /v1/responses (the built-in openai provider first tries a WebSocket there): 426, so codex
    falls back to HTTPS streaming."""
    err = {"message": "WebSockets are not supported by the fake provider", "type": "invalid_request_error"}
    return Json(426, {"error": err})


ROUTES: list[Route] = [
    ("POST", r"/responses$", responses),
    ("GET", r"/responses$", no_websocket),
    ("GET", r"/models$", models),
]


# ---------------------------------------------------------------- the codex side


def config_toml(
    fake: ProviderFake | str, *, model: str = MODEL, retries: int | None = 1, idle_ms: int | None = 10000
) -> str:
    """$CODEX_HOME/config.toml: a model provider at the fake (or at a URL), few retries (None: codex's
    defaults), no update checks, no analytics."""
    url = fake if isinstance(fake, str) else fake.url
    knobs = ""
    if retries is not None:
        knobs += f"request_max_retries = {retries}\nstream_max_retries = {retries}\n"
    if idle_ms is not None:
        knobs += f"stream_idle_timeout_ms = {idle_ms}\n"
    return f"""\
model = "{model}"
model_provider = "{PROVIDER_ID}"
check_for_update_on_startup = false

[model_providers.{PROVIDER_ID}]
name = "Fake OpenAI"
base_url = "{url}/v1"
env_key = "{KEY_ENV}"
wire_api = "responses"
{knobs}
[analytics]
enabled = false

[otel]
exporter = "none"
"""


def cli_env(fake: ProviderFake, home: Path, *, config: str | None = None, **extra: str | None) -> dict[str, str]:
    """The environment for a real ``codex`` run against ``fake``: HOME and CODEX_HOME under ``home``
    (config.toml written there), the key in OPENAI_API_KEY; ``extra`` overrides variables (None drops one).
    Inherited OPENAI_*/CODEX_* variables are dropped so the real ones never leak in."""
    codex_home = Path(home) / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(config if config is not None else config_toml(fake))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_", "AZURE_OPENAI"))}
    env.update(
        HOME=str(home),
        CODEX_HOME=str(codex_home),
        XDG_CONFIG_HOME=str(Path(home) / ".config"),
        NO_COLOR="1",
        **{KEY_ENV: fake.key},
    )
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env
