"""The Gemini API (generativelanguage.googleapis.com, v1beta) as @google/gemini-cli calls it.

The CLI is pointed here with ``GOOGLE_GEMINI_BASE_URL`` + ``GEMINI_API_KEY`` and
``security.auth.selectedType: "gemini-api-key"`` in ``~/.gemini/settings.json`` (see :func:`cli_env`).
It calls ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` for the main turns and
``POST /v1beta/models/{model}:generateContent`` for utility calls (the model router's classifier,
whose request carries a JSON response schema with ``model_choice`` or ``complexity_score``);
``:countTokens`` and ``:embedContent`` are answered harmlessly. The key is checked against
``fake.key`` (header ``x-goog-api-key`` or query ``key``), as Google does.

Modes (``fake.mode``):

``ok``           the main model answers ``fake.reply``, with the usage in :data:`MAIN_USAGE`
                 (the router's own call reports :data:`ROUTER_USAGE`, so accounting can be checked)
``edit``         the main model calls ``write_file`` with ``fake.edit`` (a path relative to the cwd,
                 content); after the functionResponse it answers ``fake.reply``
``auth``         400 INVALID_ARGUMENT / API_KEY_INVALID "API key not valid. Please pass a valid API key."
``rate_limit``   429 RESOURCE_EXHAUSTED for a PER-MINUTE quota (QuotaFailure quotaId
                 ``GenerateRequestsPerMinutePerProjectPerModel-FreeTier``, RetryInfo ``retryDelay``);
                 the delay is ``fake.state["gemini_retry_delay"]`` seconds (default 37.5)
``daily_quota``  429 RESOURCE_EXHAUSTED for a PER-DAY quota (quotaId
                 ``GenerateRequestsPerDayPerProjectPerModel-FreeTier``, "Please retry in 37.5s.")
``zero_quota``   429 as ``rate_limit`` but "limit: 0": the model has no free tier for this key (the CLI
                 calls that terminal; waiting will not help)

Quotas are per model: in the two 429 modes the router's classifier call is answered unless
``fake.state["gemini_limit_router"]`` is true (the CLI retries that call 5 times, >= 65 s, whatever
the settings say). The 429/400 bodies are the shapes the real API sends (google.rpc.Status JSON with ``details``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from support.providers import Json, ProviderFake, Request, Route, Sse

# The main model's usage per answer, and the router's: distinct figures so a test can tell them apart.
MAIN_USAGE = {"prompt": 1234, "candidates": 56, "thoughts": 78, "cached": 400}
ROUTER_USAGE = {"prompt": 321, "candidates": 9, "thoughts": 5, "cached": 0}

RATE_LIMIT_QUOTA_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
DAILY_QUOTA_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
API_KEY_INVALID = "API key not valid. Please pass a valid API key."
_MODEL_PATH = re.compile(r"/models/([^/:]+):")


def model_of(req: Request) -> str:
    m = _MODEL_PATH.search(req.path)
    return m.group(1) if m else "unknown"


def _usage(u: dict[str, int]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "promptTokenCount": u["prompt"],
        "candidatesTokenCount": u["candidates"],
        "totalTokenCount": u["prompt"] + u["candidates"] + u["thoughts"],
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u["prompt"]}],
    }
    if u["thoughts"]:
        doc["thoughtsTokenCount"] = u["thoughts"]
    if u["cached"]:
        doc["cachedContentTokenCount"] = u["cached"]
        doc["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": u["cached"]}]
    return doc


def _response(model: str, parts: list[dict[str, Any]], usage: dict[str, int] | None, finish: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    doc: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": "fake-gemini-response"}
    if usage is not None:
        doc["usageMetadata"] = _usage(usage)
    return doc


# ---------------------------------------------------------------- errors, as Google sends them


def _status(code: int, status: str, message: str, details: list[dict[str, Any]]) -> Json:
    return Json(code, {"error": {"code": code, "message": message, "status": status, "details": details}})


def auth_error() -> Json:
    return _status(
        400,
        "INVALID_ARGUMENT",
        API_KEY_INVALID,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": API_KEY_INVALID},
        ],
    )


def quota_error(model: str, *, daily: bool, retry_delay: float, limit: str | None = None) -> Json:
    """429 RESOURCE_EXHAUSTED with Help + QuotaFailure + RetryInfo, in the order and wording the
    Gemini API uses (2026): the message ends "Please retry in 37.5s.", RetryInfo has whole seconds."""
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    quota_id = DAILY_QUOTA_ID if daily else RATE_LIMIT_QUOTA_ID
    limit = limit or ("250" if daily else "10")
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
        "head to: https://ai.dev/rate-limit. \n"
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}\n"
        f"Please retry in {retry_delay:g}s."
    )
    return _status(
        429,
        "RESOURCE_EXHAUSTED",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": limit,
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{int(retry_delay)}s"},
        ],
    )


def _key_problem(fake: ProviderFake, req: Request) -> Json | None:
    key = req.headers.get("x-goog-api-key") or (req.query.get("key") or [""])[0]
    if fake.mode == "auth" or key != fake.key:
        return auth_error()
    return None


def _failure(fake: ProviderFake, req: Request) -> Json | None:
    """The error this request gets in the current mode (None: answer it)."""
    bad = _key_problem(fake, req)
    if bad is not None:
        return bad
    body = req.body if isinstance(req.body, dict) else {}
    if is_router(body) and not fake.state.get("gemini_limit_router"):
        return None  # quotas are per model: the router's small model still has some
    delay = float(fake.state.get("gemini_retry_delay", 37.5))
    if fake.mode in ("rate_limit", "daily_quota"):
        return quota_error(model_of(req), daily=fake.mode == "daily_quota", retry_delay=delay)
    if fake.mode == "zero_quota":
        return quota_error(model_of(req), daily=False, retry_delay=delay, limit="0")
    return None


# ---------------------------------------------------------------- request shapes


def _schema_text(body: Any) -> str:
    gen = (body or {}).get("generationConfig") or {}
    return json.dumps([gen.get("responseJsonSchema"), gen.get("responseSchema")])


def is_router(body: Any) -> bool:
    schema = _schema_text(body)
    return "model_choice" in schema or "complexity_score" in schema


def _router_answer(body: Any) -> dict[str, Any]:
    if "complexity_score" in _schema_text(body):
        return {"complexity_reasoning": "A trivial request.", "complexity_score": 10}
    return {"reasoning": "A simple request; the flash model suffices.", "model_choice": "flash"}


def _edit_done(body: Any) -> bool:
    """Whether a write_file call was already answered in this turn (since the last user text: a resumed
    session carries earlier turns' answers)."""
    contents = [c for c in (body or {}).get("contents") or [] if isinstance(c, dict)]
    texts = [
        i
        for i, c in enumerate(contents)
        if c.get("role") == "user" and any("text" in p and "functionResponse" not in p for p in c.get("parts") or [])
    ]
    for c in contents[texts[-1] if texts else 0 :]:
        for p in c.get("parts") or []:
            if (p.get("functionResponse") or {}).get("name") == "write_file":
                return True
    return False


# ---------------------------------------------------------------- handlers


def _main_parts(fake: ProviderFake, body: Any) -> list[dict[str, Any]]:
    if fake.mode == "edit" and not _edit_done(body):
        path, content = fake.edit
        with fake.lock:
            fake.state["gemini_edit_calls"] = fake.state.get("gemini_edit_calls", 0) + 1
        return [{"functionCall": {"name": "write_file", "args": {"file_path": path, "content": content}}}]
    return [{"text": fake.reply}]


def _router_or_failure(fake: ProviderFake, req: Request) -> tuple[dict[str, Any] | Json | None, str, dict[str, Any]]:
    """What both generate routes answer first: a failure (the mode's), or the router's classifier
    answer (a response doc); else None, with the model and the body."""
    model = model_of(req)
    body = req.body if isinstance(req.body, dict) else {}
    bad = _failure(fake, req)
    if bad is not None:
        return bad, model, body
    if is_router(body):
        return _response(model, [{"text": json.dumps(_router_answer(body))}], ROUTER_USAGE, True), model, body
    return None, model, body


def stream(fake: ProviderFake, req: Request) -> Sse | Json | None:
    first, model, body = _router_or_failure(fake, req)
    if isinstance(first, Json):
        return first
    if first is not None:
        return Sse([(None, first)])
    parts = _main_parts(fake, body)
    if "text" in parts[0] and len(fake.reply) > 1:  # the text in two chunks, usage on the last (as Google does)
        half = len(fake.reply) // 2
        first = _response(model, [{"text": fake.reply[:half]}], None, False)
        last = _response(model, [{"text": fake.reply[half:]}], MAIN_USAGE, True)
        return Sse([(None, first), (None, last)])
    return Sse([(None, _response(model, parts, MAIN_USAGE, True))])


def generate(fake: ProviderFake, req: Request) -> Json | None:
    first, model, body = _router_or_failure(fake, req)
    if first is not None:
        return first if isinstance(first, Json) else Json(200, first)
    if "responseJsonSchema" in (body.get("generationConfig") or {}) or "responseSchema" in (
        body.get("generationConfig") or {}
    ):  # some other utility JSON call (next-speaker check, loop detection, ...): an empty-ish object
        return Json(200, _response(model, [{"text": "{}"}], ROUTER_USAGE, True))
    return Json(200, _response(model, _main_parts(fake, body), MAIN_USAGE, True))


def count_tokens(fake: ProviderFake, req: Request) -> Json | None:
    bad = _key_problem(fake, req)
    return bad if bad is not None else Json(200, {"totalTokens": 42, "promptTokensDetails": []})


def embed(fake: ProviderFake, req: Request) -> Json | None:
    bad = _key_problem(fake, req)
    if bad is not None:
        return bad
    if req.path.endswith(":batchEmbedContents"):
        n = len((req.body or {}).get("requests") or []) if isinstance(req.body, dict) else 0
        return Json(200, {"embeddings": [{"values": [0.0] * 8} for _ in range(n)]})
    return Json(200, {"embedding": {"values": [0.0] * 8}})


def models(fake: ProviderFake, req: Request) -> Json | None:
    bad = _key_problem(fake, req)
    if bad is not None:
        return bad
    names = ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]
    return Json(
        200, {"models": [{"name": f"models/{n}", "supportedGenerationMethods": ["generateContent"]} for n in names]}
    )


ROUTES: list[Route] = [
    ("POST", r"^/v1\w*/models/[^/:]+:streamGenerateContent$", stream),
    ("POST", r"^/v1\w*/models/[^/:]+:generateContent$", generate),
    ("POST", r"^/v1\w*/models/[^/:]+:countTokens$", count_tokens),
    ("POST", r"^/v1\w*/models/[^/:]+:(?:batchE|e)mbedContents?$", embed),
    ("GET", r"^/v1\w*/models(?:/[^/:]+)?$", models),
]


# ---------------------------------------------------------------- the CLI's environment


def settings(**overrides: Any) -> dict[str, Any]:
    """~/.gemini/settings.json for a headless run against the fake (nested keys as the CLI's schema has them)."""
    doc: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False, "maxAttempts": 1},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    for key, value in overrides.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return doc


def cli_env(
    fake: ProviderFake,
    home: Path,
    *,
    settings_doc: dict[str, Any] | None = None,
    key: str | None = "",
    **extra: str | None,
) -> dict[str, str]:
    """The child environment for the real ``gemini`` pointed at ``fake``, with HOME = ``home``.

    Writes ``home/.gemini/settings.json`` (``settings_doc``, default :func:`settings`; ``{}``: no
    file). ``key``: the GEMINI_API_KEY ("" = ``fake.key``, None = unset). ``TMPDIR`` is under
    ``home`` (the CLI writes ``gemini-client-error-*.json`` reports to os.tmpdir() on API errors).
    ``extra`` are added last (e.g. PATH; a None value removes the variable).
    """
    import os

    home.mkdir(parents=True, exist_ok=True)
    gdir = home / ".gemini"
    gdir.mkdir(exist_ok=True)
    doc = settings() if settings_doc is None else settings_doc
    if doc:
        (gdir / "settings.json").write_text(json.dumps(doc, indent=2))
    tmp = home / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "GOOGLE_GEMINI_BASE_URL": fake.url,
        "NO_BROWSER": "true",
    }
    if key is not None:
        env["GEMINI_API_KEY"] = key or fake.key
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
