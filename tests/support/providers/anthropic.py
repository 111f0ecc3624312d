"""The Anthropic Messages API, faked (what Claude Code talks to via ``ANTHROPIC_BASE_URL``).

Routes: ``POST /v1/messages`` (streaming SSE, or one JSON message when the body has no
``"stream": true``), ``POST /v1/messages/count_tokens``, ``GET /v1/models``; anything else under
``/api/`` or ``/v1/`` the CLI may call (OAuth profile, feature flags, metrics...) gets a harmless
empty ``{}``. Every request must carry ``x-api-key: fake.key`` (or ``Authorization: Bearer
fake.key``), else it gets the real 401.

Modes (``fake.mode``):

``ok``          the reply is ``fake.reply``
``edit``        the main model first answers with a ``Write`` tool_use creating ``fake.edit[0]``
                (relative to the CLI's working directory) with ``fake.edit[1]``; once the
                tool_result comes back, the final text ``fake.reply``
``auth``        401 ``authentication_error`` "invalid x-api-key" (or ``fake.state["auth_message"]``,
                e.g. "OAuth token has expired. Please obtain a new token or refresh your existing token.")
``rate_limit``  429 ``rate_limit_error`` with ``retry-after`` and ``anthropic-ratelimit-*`` headers
``usage_limit`` 429 ``rate_limit_error`` with the subscription (``anthropic-ratelimit-unified-*``)
                headers saying the ``fake.state["claim"]`` window (default ``five_hour``) is used up,
                resetting at ``fake.state["reset"]`` (unix seconds; default: in 2 hours). The CLI
                reads them only when logged in to a Claude.ai plan (see :func:`oauth_env`)
``credit``      400 ``invalid_request_error`` "Your credit balance is too low ..."
``overloaded``  529 ``overloaded_error``
``subagent``    the main model starts a Haiku subagent (the ``Agent`` tool, ``model: haiku``), which
                answers :data:`SUBAGENT_REPLY`; then the final text ``fake.reply`` (so the result's
                ``modelUsage`` names two models)

Background helper calls (no tools offered: session titles, summaries..., usually the small/fast
Haiku model) and the subagent always get a short answer with their own, small usage
(:data:`SIDE_USAGE`) and never an error, so the main conversation's usage (:data:`MAIN_USAGE` per
answer) can be told apart.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from support.providers import Json, ProviderFake, Request, Route, Sse

MAIN_USAGE = {
    "input_tokens": 120,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 20000,
    "output_tokens": 40,
}
SIDE_USAGE = {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}
SIDE_REPLY = '{"title": "Fake session"}'  # helpers asked for JSON (e.g. a session title) get valid JSON
SUBAGENT_PROMPT = "Report the answer to the side question."
SUBAGENT_REPLY = "side answer: 42"

CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
RATE_LIMIT_MESSAGE = (
    "This request would exceed the rate limit for your organization (00000000-0000-0000-0000-000000000000) of "
    "50,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
    "the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or "
    "try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options "
    "for a rate limit increase."
)


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Json:
    rid = _request_id()
    doc = {"type": "error", "error": {"type": kind, "message": message}, "request_id": rid}
    return Json(
        status,
        doc,
        {"request-id": rid, "x-should-retry": "true" if status in (429, 529) else "false", **(headers or {})},
    )


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def rate_limit_headers(retry_after: int = 20) -> dict[str, str]:
    """The headers of an API-key rate-limit 429 (input tokens per minute exhausted)."""
    reset = _rfc3339(time.time() + retry_after)
    return {
        "retry-after": str(retry_after),
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": "50000",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": reset,
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": "10000",
        "anthropic-ratelimit-output-tokens-reset": reset,
        "anthropic-ratelimit-tokens-limit": "60000",
        "anthropic-ratelimit-tokens-remaining": "10000",
        "anthropic-ratelimit-tokens-reset": reset,
    }


_WINDOW = {"five_hour": "5h", "seven_day": "7d", "seven_day_opus": "7d_opus", "seven_day_sonnet": "7d_sonnet"}


def unified_limit_headers(reset: int, claim: str = "five_hour") -> dict[str, str]:
    """The headers of a subscription (Claude.ai plan) 429: the ``claim`` window (five_hour, seven_day,
    seven_day_opus, seven_day_sonnet) is spent until ``reset`` (unix seconds)."""
    window = _WINDOW.get(claim, "5h")
    return {
        "retry-after": str(max(1, int(reset - time.time()))),
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(reset),
        "anthropic-ratelimit-unified-representative-claim": claim,
        **(
            {}
            if window == "7d"
            else {
                "anthropic-ratelimit-unified-7d-status": "allowed",
                "anthropic-ratelimit-unified-7d-reset": str(reset + 5 * 86400),
                "anthropic-ratelimit-unified-7d-utilization": "0.42",
            }
        ),
        f"anthropic-ratelimit-unified-{window}-status": "rejected",
        f"anthropic-ratelimit-unified-{window}-reset": str(reset),
        f"anthropic-ratelimit-unified-{window}-utilization": "1.0",
        "anthropic-ratelimit-unified-fallback": "available",
        "anthropic-ratelimit-unified-overage-status": "rejected",
        "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
    }


# ---------------------------------------------------------------- helpers


def authorized(fake: ProviderFake, req: Request) -> bool:
    key = req.headers.get("x-api-key") or ""
    bearer = req.headers.get("authorization") or ""
    return key == fake.key or bearer == f"Bearer {fake.key}"


def is_side_call(body: Any) -> bool:
    """A background helper call (session title, summaries...: no tools offered), or a call of the
    Haiku subagent the main model started in ``subagent`` mode: not the conversation the user asked for."""
    if not isinstance(body, dict):
        return False
    return not body.get("tools") or _is_subagent(body)


def _is_subagent(body: dict[str, Any]) -> bool:
    return "haiku" in str(body.get("model", "")).lower() and any(SUBAGENT_PROMPT in t for t in user_texts(body))


def user_texts(body: Any) -> list[str]:
    """Every text block of every user message in a /v1/messages body, in order."""
    out: list[str] = []
    for msg in (body or {}).get("messages") or []:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            out.append(content)
            continue
        for block in content or []:
            if isinstance(block, dict) and block.get("type") == "text":
                out.append(str(block.get("text", "")))
    return out


def main_calls(fake: ProviderFake) -> list[Request]:
    """The main conversation's /v1/messages requests (background helpers and subagents left out)."""
    return [r for r in fake.seen("/v1/messages") if r.path.endswith("/v1/messages") and not is_side_call(r.body)]


def _has_tool_result(body: dict[str, Any]) -> bool:
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs else {}
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _texts(node: Any) -> list[str]:
    """Every ``"text"`` string anywhere in a request body (system blocks, messages, reminders)."""
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        return found + [t for k, v in node.items() if k != "text" for t in _texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v)]
    return []


def working_dir(fake: ProviderFake, body: dict[str, Any]) -> str:
    """The CLI's working directory: ``fake.state["cwd"]`` if a test set it, else what its prompt says
    ("Primary working directory: /path" in the environment block)."""
    if fake.state.get("cwd"):
        return str(fake.state["cwd"])
    texts = [body["system"]] if isinstance(body.get("system"), str) else []
    for text in texts + _texts(body):
        m = re.search(r"(?:Primary w|W)orking directory:\s*(\S+)", text)
        if m:
            return m.group(1)
    return "."


# ---------------------------------------------------------------- answers


def _message(model: str, content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {**usage, "service_tier": "standard"},
    }


def _stream(msg: dict[str, Any]) -> list[tuple[str, Any]]:
    """One message as the SSE events Anthropic sends for it."""
    usage = msg["usage"]
    start = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                )
            )
            text = block["text"]
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                if part:
                    delta = {"type": "text_delta", "text": part}
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        else:  # tool_use
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": head}))
            partial = json.dumps(block["input"])
            for part in (partial[: len(partial) // 2], partial[len(partial) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": part}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    final_usage = {
        k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
        "usage": final_usage,
    }
    events.append(("message_delta", delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _answer(body: dict[str, Any], msg: dict[str, Any]) -> Json | Sse:
    if body.get("stream"):
        return Sse(_stream(msg), headers={"request-id": _request_id()})
    return Json(200, msg, {"request-id": _request_id()})


def _error_for_mode(fake: ProviderFake) -> Json | None:
    mode = fake.mode  # (auth is answered before: it refuses every call, side calls too)
    if mode == "rate_limit":
        return _error(
            429, "rate_limit_error", RATE_LIMIT_MESSAGE, rate_limit_headers(int(fake.state.get("retry_after", 20)))
        )
    if mode == "usage_limit":
        reset = int(fake.state.get("reset") or time.time() + 7200)
        claim = str(fake.state.get("claim") or "five_hour")
        return _error(429, "rate_limit_error", "Rate limited", unified_limit_headers(reset, claim))
    if mode == "credit":
        return _error(400, "invalid_request_error", CREDIT_MESSAGE)
    if mode == "overloaded":
        return _error(529, "overloaded_error", "Overloaded")
    return None


def messages(fake: ProviderFake, req: Request) -> Json | Sse | None:
    if not req.path.endswith("/v1/messages"):
        return None
    if fake.mode == "auth" or not authorized(fake, req):
        return _error(401, "authentication_error", str(fake.state.get("auth_message") or "invalid x-api-key"))
    body = req.body if isinstance(req.body, dict) else {}
    model = str(body.get("model") or "claude-unknown")
    if _is_subagent(body):
        return _answer(body, _message(model, [{"type": "text", "text": SUBAGENT_REPLY}], "end_turn", SIDE_USAGE))
    if is_side_call(body):
        return _answer(body, _message(model, [{"type": "text", "text": SIDE_REPLY}], "end_turn", SIDE_USAGE))
    err = _error_for_mode(fake)
    if err is not None:
        return err
    if fake.mode in ("edit", "subagent") and not _has_tool_result(body):
        if fake.mode == "edit":
            rel, content = fake.edit
            tool_input: dict[str, Any] = {"file_path": str(Path(working_dir(fake, body)) / rel), "content": content}
            name, intro = "Write", f"I'll create {rel}."
        else:
            tool_input = {
                "description": "Answer side question",
                "prompt": SUBAGENT_PROMPT,
                "subagent_type": "general-purpose",
                "model": "haiku",
                "run_in_background": False,
            }
            name, intro = "Agent", "I'll ask a helper."
        tool = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name, "input": tool_input}
        return _answer(body, _message(model, [{"type": "text", "text": intro}, tool], "tool_use", MAIN_USAGE))
    return _answer(body, _message(model, [{"type": "text", "text": fake.reply}], "end_turn", MAIN_USAGE))


def count_tokens(fake: ProviderFake, req: Request) -> Json | None:
    if not authorized(fake, req):
        return _error(401, "authentication_error", "invalid x-api-key")
    return Json(200, {"input_tokens": max(1, len(req.text()) // 4)})


def models(fake: ProviderFake, req: Request) -> Json | None:
    if not authorized(fake, req):
        return _error(401, "authentication_error", "invalid x-api-key")
    names = ["claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"]
    data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names]
    return Json(200, {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})


def harmless(fake: ProviderFake, req: Request) -> Json | None:
    """Anything else the CLI calls (OAuth profile, metrics, feature flags, ...): an empty object."""
    return Json(200, {})


ROUTES: list[Route] = [
    ("POST", r"/v1/messages/count_tokens$", count_tokens),
    ("POST", r"/v1/messages$", messages),
    ("GET", r"/v1/models", models),
    ("GET", r"^/(api|v1)/", harmless),
    ("POST", r"^/(api|v1)/", harmless),
]


# ---------------------------------------------------------------- the child environment

QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "API_TIMEOUT_MS": "20000",
}


def cli_env(fake: ProviderFake, home: Path, **extra: str) -> dict[str, str]:
    """The child environment for a real ``claude`` talking to ``fake``: HOME under the test's tmp dir,
    the fake's URL and key, no telemetry/auto-update/non-essential traffic, no retries. Nothing of this
    process's ANTHROPIC_*/CLAUDE_* settings leaks in; ``extra`` (e.g. PATH, IS_SANDBOX="1") goes last."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "USER", "SHELL")
    env = {
        k: v
        for k, v in os.environ.items()
        if k in keep or k.startswith("GIT_AUTHOR_") or k.startswith("GIT_COMMITTER_")
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        ANTHROPIC_BASE_URL=fake.url,
        ANTHROPIC_API_KEY=fake.key,
        **QUIET,
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def oauth_env(fake: ProviderFake, env: dict[str, str], **extra: str) -> dict[str, str]:
    """``env`` logged in to a Claude.ai plan instead of an API key: an OAuth token (``fake.key``, sent as
    ``Authorization: Bearer``) with the inference scope. Only then does the CLI read the subscription
    (``anthropic-ratelimit-unified-*``) headers of a 429 and print "You've hit your ... limit · resets ..."."""
    out = {k: v for k, v in env.items() if k != "ANTHROPIC_API_KEY"}
    out.update(CLAUDE_CODE_OAUTH_TOKEN=fake.key, CLAUDE_CODE_OAUTH_SCOPES="user:inference user:profile", **extra)
    return out
