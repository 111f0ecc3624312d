"""Secrets stay out of the repo: output written into task files is redacted first.

Redaction comes *before* any cut: a cut through a key leaves a fragment no pattern knows
(30 of its 40 characters). So whoever cuts text redacts a window ``MARGIN`` wider than what
it keeps first (``procs.redacted_tail``, ``_bounded`` here), and a value of a secret variable
cut elsewhere is still masked where its fragment sits at either end of a text.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "[redacted]"
MARGIN = 16_384  # bytes redacted beyond a cut: more than any secret below (an 8192-bit RSA key block is ~6.5 KB)
MIN_FRAGMENT = 8  # the shortest end of a secret variable's value that is masked at a text's edge
_AWS_SECRET_LABEL = r"(?:aws[_-]?secret(?:[_-]?access)?(?:[_-]?key)?|secret[_-]?(?:access[_-]?)?key)"
_LABEL_SEP = r"[\"']?(?:\s*[:=]\s*|\s+)[\"']?"  # key=value, key: value, "key": "value", --key value
PATTERNS = [
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.S
    ),
    re.compile(r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,})"),  # Anthropic / OpenAI
    re.compile(r"\b(gsk_[A-Za-z0-9]{20,})"),  # Groq
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),  # GitHub
    re.compile(r"\b(gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,})"),  # GitLab
    re.compile(r"\b(xox[abeprs]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,})"),  # Slack
    re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"),  # AWS access key id (long-lived, temporary)
    # AWS secret access key: 40 base64 characters, only where labelled (a bare 40-hex commit id is not one)
    re.compile(rf"(?i)((?<![a-z0-9]){_AWS_SECRET_LABEL}{_LABEL_SEP})([A-Za-z0-9/+]{{40}})(?![A-Za-z0-9/+=])"),
    re.compile(rf"(?i)((?<![a-z0-9])(?:aws[_-]?)?session[_-]?token{_LABEL_SEP})([A-Za-z0-9/+=]{{40,}})"),
    re.compile(r"\b(AIza[0-9A-Za-z_-]{35})"),  # Google API key
    re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{16,})"),
    # key=value; a reference to a variable ($TOKEN, ${TOKEN}, %TOKEN%) is not a secret
    re.compile(r"(?i)\b((?:api[_-]?key|secret|token|password|passwd)[\"']?\s*[:=]\s*[\"']?)(?![$%])([^\s\"',;]{8,})"),
]
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.I)


def _env_values(extra_names: list[str]) -> list[str]:
    vals = []
    for name, value in os.environ.items():
        if (SECRET_ENV.search(name) or name in extra_names) and len(value) >= 8:
            vals.append(value)
    return sorted(set(vals), key=len, reverse=True)


def _cut_ends(text: str, value: str) -> str:
    """Mask what a cut elsewhere left of ``value``: its end at the start of ``text``, its start at the end."""
    for n in range(len(value) - 1, MIN_FRAGMENT - 1, -1):
        if text.startswith(value[-n:]):
            text = MASK + text[n:]
            break
    for n in range(len(value) - 1, MIN_FRAGMENT - 1, -1):
        if text.endswith(value[:n]):
            return text[:-n] + MASK
    return text


def redact(text: str, extra_names: list[str] | None = None) -> str:
    """Mask values that look like tokens and keys, and the values of secret environment variables."""
    if not text:
        return text
    for value in _env_values(extra_names or []):
        text = _cut_ends(text.replace(value, MASK), value)
    for pat in PATTERNS:
        if pat.groups >= 2:
            text = pat.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pat.sub(MASK, text)
    return text


MAX_TEXT = 32_000  # characters kept of any one text value written into a task file (its tail)


def _bounded(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"[... {len(text) - MAX_TEXT} characters cut]" + text[-MAX_TEXT:]


def redact_value(value: Any, names: list[str]) -> Any:
    """``value`` with every text inside it (nested dicts and lists too) redacted and bounded."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _bounded(redact(value, names))
    if isinstance(value, dict):
        return {str(k): redact_value(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, names) for v in value]
    return value


def redact_result(result: dict[str, Any], cfg: Any = None) -> dict[str, Any]:
    """Every text value of a result, redacted and bounded (names from the fleet config's `redact_env` too)."""
    extra = cfg.get("redact_env") if cfg is not None else None
    names = [str(n) for n in extra] if isinstance(extra, list) else []
    return {str(k): redact_value(v, names) for k, v in result.items()}


def find_secret(value: Any) -> str | None:
    """The first thing inside ``value`` that looks like a token or key (shown cut short), or None.

    Only the patterns count here (not this machine's environment), so checking a
    task file gives the same answer on every machine.
    """
    if isinstance(value, str):
        for pat in PATTERNS:
            m = pat.search(value)
            if m:
                hit = m.group(pat.groups) if pat.groups >= 2 else m.group(0)
                return hit[:6] + "..."
        return None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for v in value:
            hit = find_secret(v)
            if hit:
                return hit
    return None
