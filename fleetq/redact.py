"""Secrets stay out of the repo: output written into task files is redacted first."""
from __future__ import annotations

import os
import re
from typing import Any

MASK = "[redacted]"
PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
    re.compile(r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,})"),  # Anthropic / OpenAI
    re.compile(r"\b(gsk_[A-Za-z0-9]{20,})"),  # Groq
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),  # GitHub
    re.compile(r"\b(glpat-[A-Za-z0-9_-]{20,})"),  # GitLab
    re.compile(r"\b(xox[abprs]-[A-Za-z0-9-]{10,})"),  # Slack
    re.compile(r"\b(AKIA[0-9A-Z]{16})\b"),  # AWS access key id
    re.compile(r"\b(AIza[0-9A-Za-z_-]{35})"),  # Google API key
    re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{16,})"),
    re.compile(r"(?i)\b((?:api[_-]?key|secret|token|password|passwd)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]{8,})"),
]
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.I)


def _env_values(extra_names: list[str]) -> list[str]:
    vals = []
    for name, value in os.environ.items():
        if (SECRET_ENV.search(name) or name in extra_names) and len(value) >= 8:
            vals.append(value)
    return sorted(set(vals), key=len, reverse=True)


def redact(text: str, extra_names: list[str] | None = None) -> str:
    """Mask values that look like tokens and keys, and the values of secret environment variables."""
    if not text:
        return text
    for value in _env_values(extra_names or []):
        text = text.replace(value, MASK)
    for pat in PATTERNS:
        if pat.groups >= 2:
            text = pat.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pat.sub(MASK, text)
    return text


def redact_result(result: dict[str, Any], cfg: Any = None) -> dict[str, Any]:
    """Every text value of a result, redacted (names from the fleet config's `redact_env` too)."""
    names = list(cfg.get("redact_env") or []) if cfg is not None else []
    out: dict[str, Any] = {}
    for k, v in result.items():
        out[k] = redact(v, names) if isinstance(v, str) else v
    return out
