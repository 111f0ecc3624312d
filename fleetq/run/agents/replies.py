"""An agent's output read as its reply, plus whatever usage it reports (cost, tokens, session, model)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fleetq.handlerapi import last_line


@dataclass
class Reply:
    text: str = ""
    error: str | None = None  # the agent reported a failure in its output
    extra: dict[str, Any] = field(default_factory=dict)


def json_doc(stdout: str) -> Any:
    """The JSON document in stdout: all of it, else its last line that parses."""
    try:
        return json.loads(stdout)
    except ValueError:
        pass
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != ""}


def parse_claude(doc: Any) -> Reply | None:
    if isinstance(doc, list):  # --verbose json: the messages, the last 'result' one is the summary
        doc = next((m for m in reversed(doc) if isinstance(m, dict) and m.get("type") == "result"), None)
    if not isinstance(doc, dict) or not ("result" in doc or "is_error" in doc):
        return None
    usage = doc.get("usage") or {}
    models = doc.get("modelUsage") or {}
    cost = doc.get("total_cost_usd", doc.get("cost_usd"))
    extra = _clean(
        {
            "cost_usd": cost if isinstance(cost, int | float) else None,
            "input_tokens": _int(usage.get("input_tokens")),
            "output_tokens": _int(usage.get("output_tokens")),
            "session_id": doc.get("session_id"),
            "model": next(iter(models), None) if isinstance(models, dict) else None,
            "num_turns": _int(doc.get("num_turns")),
        }
    )
    text = str(doc.get("result") or "")
    failed = bool(doc.get("is_error")) or str(doc.get("subtype", "success")).startswith("error")
    error = (last_line(text) or f"claude reported {doc.get('subtype', 'an error')}") if failed else None
    return Reply(text, error, extra)


def parse_gemini(doc: Any) -> Reply | None:
    if not isinstance(doc, dict) or not ("response" in doc or "error" in doc):
        return None
    models = (doc.get("stats") or {}).get("models") or {}
    tokens = [(m.get("tokens") or {}) for m in models.values() if isinstance(m, dict)]
    extra = _clean(
        {
            "input_tokens": sum(_int(t.get("prompt")) or 0 for t in tokens) if tokens else None,
            "output_tokens": sum(_int(t.get("candidates")) or 0 for t in tokens) if tokens else None,
            "session_id": doc.get("session_id") or doc.get("sessionId"),
            "model": next(iter(models)) if len(models) == 1 else (", ".join(models) or None),
        }
    )
    err = doc.get("error")
    error = None
    if err:
        error = str(err.get("message") or err) if isinstance(err, dict) else str(err)
    return Reply(str(doc.get("response") or ""), error, extra)


def parse_openai(doc: Any) -> Reply | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        return None
    choice = doc["choices"][0] if doc["choices"] else {}
    message = choice.get("message") or {}
    usage = doc.get("usage") or {}
    extra = _clean(
        {
            "input_tokens": _int(usage.get("prompt_tokens")),
            "output_tokens": _int(usage.get("completion_tokens")),
            "model": doc.get("model"),
            "session_id": doc.get("id"),
        }
    )
    return Reply(str(message.get("content") or ""), None, extra)


_CODEX_TOKENS = re.compile(r"tokens used:?\s*([\d,]+)", re.I)


def parse_output(kind: str, stdout: str, *, last_message: str | None = None, stderr: str = "") -> Reply:
    """An agent's output -> reply text + usage; text that does not parse is the reply as is."""
    if kind == "codex-last-message":
        m = _CODEX_TOKENS.findall(stderr) or _CODEX_TOKENS.findall(stdout)
        extra = {"total_tokens": int(m[-1].replace(",", ""))} if m else {}
        return Reply((last_message if last_message is not None else stdout).strip(), None, extra)
    parser = {"claude-json": parse_claude, "gemini-json": parse_gemini, "openai-chat": parse_openai}.get(kind)
    parsed = parser(json_doc(stdout)) if parser and stdout.strip() else None
    return parsed if parsed is not None else Reply(stdout.strip())
