"""OpenAI chat completions as Groq serves it (POST /openai/v1/chat/completions), for fleetq's http agents.

Modes: ``ok`` (fake.reply), ``auth`` (401 invalid_api_key), ``rate_limit`` (429 tokens per minute,
``retry-after`` header, "Please try again in 4.36s"), ``daily`` (429 requests per day, "try again in
1m26.4s"), ``server`` (500). Shapes as api.groq.com sends them (its docs: errors, rate limits).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from support.providers import Json, Request

if TYPE_CHECKING:
    from support.providers import ProviderFake

MODEL = "llama-3.3-70b-versatile"
_TPM = (
    f"Rate limit reached for model `{MODEL}` in organization `org_01fake` service tier `on_demand` on tokens per "
    "minute (TPM): Limit 12000, Used 11861, Requested 1011. Please try again in 4.36s. Need more tokens? Upgrade "
    "to Dev Tier today at https://console.groq.com/settings/billing"
)
_RPD = (
    f"Rate limit reached for model `{MODEL}` in organization `org_01fake` service tier `on_demand` on requests per "
    "day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 1m26.4s. Need more tokens? Upgrade to Dev "
    "Tier today at https://console.groq.com/settings/billing"
)


def _error(status: int, message: str, type_: str, code: str, **headers: str) -> Json:
    return Json(status, {"error": {"message": message, "type": type_, "code": code}}, headers)


def chat(fake: ProviderFake, req: Request) -> Json:
    if req.headers.get("authorization") != f"Bearer {fake.key}" or fake.mode == "auth":
        return _error(401, "Invalid API Key", "invalid_request_error", "invalid_api_key")
    if fake.mode == "rate_limit":
        return _error(429, _TPM, "tokens", "rate_limit_exceeded", **{"retry-after": "5"})
    if fake.mode == "daily":
        return _error(429, _RPD, "requests", "rate_limit_exceeded", **{"retry-after": "87"})
    if fake.mode == "server":
        return _error(500, "Internal Server Error", "internal_server_error", "internal_server_error")
    body = req.body if isinstance(req.body, dict) else {}
    return Json(
        200,
        {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": fake.reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20},
            "x_groq": {"id": "req_fake"},
        },
    )


def cli_env(fake: ProviderFake, home: Path, **extra: str) -> dict[str, str]:
    """The environment fleetq's groq agent needs: the key and the base URL (the fake's)."""
    return {"HOME": str(home), "GROQ_API_KEY": fake.key, "GROQ_BASE_URL": f"{fake.url}/openai/v1", **extra}


ROUTES = [("POST", r"/openai/v1/chat/completions$", chat)]
