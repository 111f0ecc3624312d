"""An agent's output read as its reply, plus whatever usage it reports (cost, tokens, session, model)."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq.handlerapi import last_line


@dataclass
class Reply:
    text: str = ""
    error: str | None = None  # the agent reported a failure in its output
    extra: dict[str, Any] = field(default_factory=dict)
    structured: bool = False  # read from the agent's structured output (else: stdout taken as it is)
    status: int | None = None  # the provider's HTTP status, where the agent reports it


def json_doc(text: str) -> Any:
    """The JSON document in ``text``: all of it, else the last one that starts a line (and may span
    lines, as gemini's pretty-printed error on stderr does), text after it ignored."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    starts = [m.start(1) for m in re.finditer(r"(?m)^[ \t]*([\[{])", text)]
    for at in reversed(starts):
        try:
            return decoder.raw_decode(text, at)[0]
        except ValueError:
            continue
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != ""}


def _claude_main_model(models: Any) -> str | None:
    """modelUsage names every model the session used, background Haiku calls (titles, summaries,
    subagents) included, in no fixed order: the main one is the one that cost the most."""
    if not isinstance(models, dict) or not models:
        return None

    def weight(name: str) -> tuple[float, int]:
        m = models[name] if isinstance(models[name], dict) else {}
        cost = m.get("costUSD")
        return (float(cost) if isinstance(cost, int | float) else 0.0, _int(m.get("outputTokens")) or 0)

    return max(models, key=weight)


def parse_claude(doc: Any) -> Reply | None:
    """claude -p --output-format json: the result message. ``usage`` is the main conversation's
    (side calls are only in ``modelUsage``); its input_tokens leave out the cache reads/writes."""
    if isinstance(doc, list):  # --verbose json: the messages, the last 'result' one is the summary
        doc = next((m for m in reversed(doc) if isinstance(m, dict) and m.get("type") == "result"), None)
    if not isinstance(doc, dict) or not ("result" in doc or "is_error" in doc):
        return None
    usage = doc.get("usage") or {}
    cache_read, cache_write = _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))
    plain = _int(usage.get("input_tokens"))
    cost = doc.get("total_cost_usd", doc.get("cost_usd"))
    extra = _clean(
        {
            "cost_usd": cost if isinstance(cost, int | float) else None,
            "input_tokens": None if plain is None else plain + (cache_read or 0) + (cache_write or 0),
            "cache_read_tokens": cache_read or None,
            "cache_creation_tokens": cache_write or None,
            "output_tokens": _int(usage.get("output_tokens")),
            "session_id": doc.get("session_id"),
            "model": _claude_main_model(doc.get("modelUsage")),
            "num_turns": _int(doc.get("num_turns")),
        }
    )
    text = str(doc.get("result") or "")
    failed = bool(doc.get("is_error")) or str(doc.get("subtype", "success")).startswith("error")
    error = (last_line(text) or f"claude reported {doc.get('subtype', 'an error')}") if failed else None
    status = _int(doc.get("api_error_status"))
    return Reply(text, error, extra, status=status if failed else None)


def _gemini_usage(models: dict[str, Any]) -> dict[str, Any]:
    """stats.models: per model ``tokens`` (prompt includes cached; thoughts apart) and, since 0.5x,
    ``roles`` (``main`` = the conversation, ``utility_router`` = the model-choosing call). The main
    role's figures and model; all models summed only where no roles are reported."""
    mains = {
        name: (m.get("roles") or {}).get("main") or {}
        for name, m in models.items()
        if isinstance(m, dict) and isinstance(m.get("roles"), dict) and "main" in m["roles"]
    }
    model: str | None
    if mains:
        tokens = [(r.get("tokens") or {}) for r in mains.values() if isinstance(r, dict)]
        model = max(mains, key=lambda n: _int((mains[n] or {}).get("totalRequests")) or 0)
    else:
        tokens = [(m.get("tokens") or {}) for m in models.values() if isinstance(m, dict)]
        model = next(iter(models)) if len(models) == 1 else (", ".join(models) or None)

    def total(key: str) -> int | None:
        return sum(_int(t.get(key)) or 0 for t in tokens) if tokens else None

    return {
        "model": model,
        "input_tokens": total("prompt"),
        "cache_read_tokens": total("cached") or None,
        "output_tokens": total("candidates"),
        "thoughts_tokens": total("thoughts") or None,
    }


def _gemini_error(err: Any) -> tuple[str, int | None]:
    """gemini's error object -> (message, HTTP status); an API error's JSON body in the message unwrapped."""
    if not isinstance(err, dict):
        return str(err), None
    message, code = str(err.get("message") or err), _int(err.get("code"))
    inner = json_doc(message) if message.lstrip().startswith("{") else None
    if isinstance(inner, dict) and isinstance(inner.get("error"), dict):
        message = str(inner["error"].get("message") or message)
        code = _int(inner["error"].get("code")) or code
    return message, code if code and 400 <= code < 600 else None


def parse_gemini(doc: Any) -> Reply | None:
    if not isinstance(doc, dict) or not ("response" in doc or "error" in doc):
        return None
    models = (doc.get("stats") or {}).get("models") or {}
    extra = _clean({**_gemini_usage(models), "session_id": doc.get("session_id") or doc.get("sessionId")})
    error, status = _gemini_error(doc["error"]) if doc.get("error") else (None, None)
    return Reply(str(doc.get("response") or ""), error, extra, status=status)


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


def parse_codex_events(stdout: str) -> Reply | None:
    """codex exec --json: JSON lines; thread.started (session), item.completed agent_message (reply),
    turn.completed usage (input_tokens includes the cached ones), turn.failed (the error). The
    ``error`` events before a turn.failed are retry notices ("Reconnecting... 1/5")."""
    events = []
    for line in stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("type"), str):
            events.append(ev)
    if not events:
        return None
    texts: list[str] = []
    usage: dict[str, Any] = {}
    session: str | None = None
    error: str | None = None
    for ev in events:
        kind = ev["type"]
        item: dict[str, Any] = ev["item"] if isinstance(ev.get("item"), dict) else {}
        if kind == "thread.started":
            session = ev.get("thread_id")
        elif kind == "item.completed" and item.get("type") == "agent_message":
            texts.append(str(item.get("text") or ""))
        elif kind == "turn.completed" and isinstance(ev.get("usage"), dict):
            usage = ev["usage"]
        elif kind == "turn.failed":
            err = ev.get("error")
            error = str(err.get("message") if isinstance(err, dict) else err)
        elif kind == "error" and error is None:
            last_notice = str(ev.get("message") or "")
            error = None if last_notice.startswith("Reconnecting") else last_notice or None
    extra = _clean(
        {
            "session_id": session,
            "input_tokens": _int(usage.get("input_tokens")),
            "cache_read_tokens": _int(usage.get("cached_input_tokens")) or None,
            "cache_creation_tokens": _int(usage.get("cache_write_input_tokens")) or None,
            "output_tokens": _int(usage.get("output_tokens")),
            "reasoning_tokens": _int(usage.get("reasoning_output_tokens")) or None,
        }
    )
    return Reply(texts[-1] if texts else "", error, extra, structured=True)


def codex_session_model(codex_home: Path, session_id: str) -> str | None:
    """The model a codex session ran with: codex --json does not say; its rollout file's turn_context does."""
    for path in codex_home.glob(f"sessions/*/*/*/rollout-*-{glob.escape(session_id)}.jsonl"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"turn_context"' not in line:
                    continue
                try:
                    payload = json.loads(line).get("payload") or {}
                except (ValueError, AttributeError):
                    continue
                if isinstance(payload, dict) and isinstance(payload.get("model"), str):
                    return payload["model"]
    return None


_CODEX_TOKENS = re.compile(r"tokens used:?\s*([\d,]+)", re.I)


def parse_output(kind: str, stdout: str, *, last_message: str | None = None, stderr: str = "") -> Reply:
    """An agent's output -> reply text + usage; text that does not parse is the reply as is."""
    if kind == "codex-json":
        reply = parse_codex_events(stdout) or Reply(stdout.strip())
        if not reply.text and last_message:
            reply.text = last_message.strip()
        return reply
    if kind == "codex-last-message":
        m = _CODEX_TOKENS.findall(stderr) or _CODEX_TOKENS.findall(stdout)
        extra = {"total_tokens": int(m[-1].replace(",", ""))} if m else {}
        return Reply((last_message if last_message is not None else stdout).strip(), None, extra)
    parser = {"claude-json": parse_claude, "gemini-json": parse_gemini, "openai-chat": parse_openai}.get(kind)
    for text in (stdout, stderr):  # gemini writes its error document to stderr
        parsed = parser(json_doc(text)) if parser and text.strip() else None
        if parsed is not None:
            parsed.structured = True
            return parsed
    return Reply(stdout.strip())
