"""What a failed agent run means: a problem only a person can fix, a usage limit to wait out, or a plain failure.

Read from the agent's own account of the failure: its structured error (claude's ``is_error``
result and ``api_error_status``, gemini's error JSON, codex's error events) and its stderr with
the prompt taken out (codex echoes the prompt there). Never from the reply the agent wrote, which
may quote anything; stdout counts only when the agent has no structured output at all.

Order matters: ``needs_human_patterns`` first (no credit left is a 429 for some providers, and
waiting will not fix it), then the usage limit: a reported HTTP 429, or ``usage_limit_patterns``.
"""

from __future__ import annotations

import re

from fleetq.core.task import fmt_time, now_utc
from fleetq.errors import last_line, strip_ansi
from fleetq.handlerapi import FAILED, NEEDS_HUMAN, HandlerResult
from fleetq.run.agents.limits import usage_limit_reset, zone
from fleetq.run.agents.registry import Spec
from fleetq.run.agents.replies import Reply


def evidence(res: HandlerResult, reply: Reply, prompt: str) -> str:
    """The text a failure is read from: the structured error, stderr, and unstructured stdout; no prompt, no ANSI."""
    parts = [reply.error or "", res.stderr_tail]
    if not reply.structured:
        parts.append(res.stdout_tail)
    text = strip_ansi("\n".join(p for p in parts if p))
    return _without(text, prompt)


def _without(text: str, prompt: str) -> str:
    """``text`` without the lines that echo the prompt (codex prints it back on stderr, line by line)."""
    echoed = {ln.strip() for ln in prompt.splitlines() if ln.strip()}
    return "\n".join(ln for ln in text.splitlines() if ln.strip() not in echoed)


def diagnose(res: HandlerResult, spec: Spec, reply: Reply, prompt: str, env: dict[str, str]) -> None:
    """Turn a failed run into needs_human (with what to do) or a usage limit (with its reset), in place."""
    if res.outcome != FAILED or res.extra.get("timed_out") or res.error == "cancelled":
        return
    text = evidence(res, reply, prompt)
    for item in spec.get("needs_human_patterns") or []:
        m = re.search(item["pattern"], text)
        if m:
            start, end = text.rfind("\n", 0, m.start()) + 1, text.find("\n", m.end())
            said = last_line(text[start : end if end >= 0 else len(text)])  # the agent's own words, one line
            res.outcome = NEEDS_HUMAN
            res.error = f"{item['say']} ({said})" if said else item["say"]
            return
    limited = reply.status == 429 or any(re.search(p, text) for p in spec.get("usage_limit_patterns") or [])
    if not limited:
        return
    res.extra["usage_limit"] = True
    # a time of day with no zone is in the agent's TZ (codex prints "try again at 2:39 AM" in it)
    local = zone((env.get("TZ") or "").lstrip(":"))
    reset = usage_limit_reset(text, now=now_utc(), patterns=spec.get("usage_limit_reset"), local=local)
    if reset is not None:
        res.extra["usage_limit_reset"] = fmt_time(reset)
    res.error = f"usage limit reached: {res.error}"
