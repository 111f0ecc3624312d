"""Agents are data: an argv template (or an HTTP endpoint) per agent, no code per agent.

The registry is the built-in defaults below, overlaid with the fleet repo's
``config/agents.yaml`` (an entry there replaces the keys it names of a built-in
agent of the same name, or adds a new agent; ``name: null`` removes one).
Spec keys, documented for users in config/agents.yaml:

``kind``             ``cli`` (default) or ``http`` (an OpenAI-compatible chat-completions API)
``argv``             cli: the command, with placeholders ``{prompt}``, ``{model}``, ``{output_file}``,
                     ``{cwd}`` (replaced inside elements, in one pass, so a prompt may contain braces)
``model_args``       argv inserted only when a model is set (default position: the end, or where an
                     element ``{model_args}`` stands); an argv element with ``{model}`` and no model
                     set is dropped together with its flag
``default_model``    the model when the task names none (required for http)
``output``           how to read the reply: text | claude-json | gemini-json | codex-last-message | openai-chat
``stdin``            optional template sent on stdin (e.g. ``"{prompt}"`` for very long prompts)
``env``              extra environment variables for the agent
``check``            argv that must exit 0 for the agent to count as installed (default: argv[0] on PATH)
``usage_limit_patterns``  regexes that, found in the output, mark a result as hitting a usage limit
``usage_limit_reset``     regexes (tried before the built-in ones) that find when the limit resets, each
                     with one named group: ``epoch`` (unix seconds), ``seconds``, ``delay`` ("2 hours 5
                     minutes", "37.5s") or ``at`` (a time of day or a date and time), and optionally ``tz``
``base_url``, ``base_url_env``, ``api_key_env``   http: endpoint, env var overriding it, env var with the key
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import yamlio
from .errors import FleetqError
from .handlerapi import DONE, FAILED, HandlerResult, Stop, find_tool, from_proc, last_line, resolve_dir
from .procs import run_command, tail_text
from .task import fmt_time, now_utc

AGENTS_FILE = "config/agents.yaml"
OUTPUTS = ("text", "claude-json", "gemini-json", "codex-last-message", "openai-chat")
KINDS = ("cli", "http")
REPLY_LIMIT = 8000  # characters of the reply kept in a task's result (the log has all of it)
_PLACEHOLDER = re.compile(r"\{(prompt|model|output_file|cwd)\}")

BUILTIN_AGENTS: dict[str, dict[str, Any]] = {
    "claude": {
        "kind": "cli",
        "argv": ["claude", "-p", "{prompt}", "--dangerously-skip-permissions", "--output-format", "json"],
        "model_args": ["--model", "{model}"],
        "output": "claude-json",
        "usage_limit_patterns": [r"usage limit reached", r"\blimit reached\b.*\bresets?\b", r"hit your (?:\w+ )?limit",
                                 r"Credit balance is too low", r"rate_limit_error"],
    },
    "gemini": {
        "kind": "cli",
        "argv": ["gemini", "--yolo", "--output-format", "json", "-p", "{prompt}"],
        "model_args": ["-m", "{model}"],
        "output": "gemini-json",
        "usage_limit_patterns": [r"RESOURCE_EXHAUSTED", r"[Qq]uota exceeded", r"exhausted your (daily )?quota"],
    },
    "codex": {
        "kind": "cli",
        "argv": ["codex", "exec", "--sandbox", "workspace-write", "--skip-git-repo-check",
                 "--output-last-message", "{output_file}", "{model_args}", "--", "{prompt}"],
        "model_args": ["-m", "{model}"],
        "output": "codex-last-message",
        "usage_limit_patterns": [r"hit your usage limit", r"usage_limit_reached", r"rate limit"],
    },
    "groq": {
        "kind": "http",
        "base_url": "https://api.groq.com/openai/v1",
        "base_url_env": "GROQ_BASE_URL",
        "api_key_env": "GROQ_API_KEY",
        "default_model": "llama-3.3-70b-versatile",
        "output": "openai-chat",
        "usage_limit_patterns": [r"rate_limit_exceeded", r"Rate limit reached", r"HTTP 429"],
    },
}


# ---------------------------------------------------------------- the registry

def load_agents(fleet_dir: Path | None) -> dict[str, dict]:
    """Built-in agents overlaid with ``<fleet_dir>/config/agents.yaml``; every spec validated."""
    agents = {name: dict(spec) for name, spec in BUILTIN_AGENTS.items()}
    where = AGENTS_FILE
    if fleet_dir is not None:
        data = yamlio.read_file(Path(fleet_dir) / AGENTS_FILE)
        for name, spec in _user_entries(data, where).items():
            if spec is None:
                agents.pop(name, None)
            else:
                agents[name] = {**agents.get(name, {}), **spec}
    for name, spec in agents.items():
        _validate(name, spec, where)
    return agents


def _user_entries(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("agents") or {}, dict):
        raise FleetqError(f"{where}: expected a top-level 'agents:' mapping of name -> spec")
    entries = data.get("agents") or {}
    for name, spec in entries.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise FleetqError(f"{where}: agent name {name!r} is not a safe name (letters, digits, '.', '_', '-')")
        if spec is not None and not isinstance(spec, dict):
            raise FleetqError(f"{where}: agent '{name}' must be a mapping (or null to remove it)")
    return entries


def _str_list(spec: dict, key: str) -> bool:
    value = spec.get(key)
    return value is None or (isinstance(value, list) and all(isinstance(x, str) for x in value))


def _validate(name: str, spec: dict, where: str) -> None:
    """Check one spec (filling in kind/output defaults); the first problem is a FleetqError."""
    problem = _shape_problem(spec) or _content_problem(spec)
    if problem:
        raise FleetqError(f"{where}: agent '{name}': {problem}")


def _shape_problem(spec: dict) -> str | None:
    kind = spec.setdefault("kind", "cli")
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, not {kind!r}"
    spec.setdefault("output", "openai-chat" if kind == "http" else "text")
    if spec["output"] not in OUTPUTS:
        return f"output must be one of {', '.join(OUTPUTS)}, not {spec['output']!r}"
    for key in ("argv", "model_args", "check", "usage_limit_patterns", "usage_limit_reset"):
        if not _str_list(spec, key):
            return f"{key} must be a list of strings"
    env = spec.get("env") or {}
    scalar = (str, int, float)
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, scalar) for k, v in env.items()):
        return "env must be a mapping of NAME: value"
    return None


def _content_problem(spec: dict) -> str | None:
    http = spec["kind"] == "http"
    if not http and not spec.get("argv"):
        return "argv is required for a cli agent (e.g. [mytool, --prompt, '{prompt}'])"
    if http and not (spec.get("base_url") or spec.get("base_url_env")):
        return "base_url (or base_url_env) is required for an http agent"
    if http and not spec.get("default_model"):
        return "default_model is required for an http agent"
    for pattern in spec.get("usage_limit_patterns") or []:
        try:
            re.compile(pattern)
        except re.error as e:
            return f"usage_limit_patterns: {pattern!r} is not a valid regex ({e})"
    for pattern in spec.get("usage_limit_reset") or []:
        try:
            groups = set(re.compile(pattern).groupindex)
        except re.error as e:
            return f"usage_limit_reset: {pattern!r} is not a valid regex ({e})"
        if len(groups & set(_RESET_GROUPS)) != 1:
            return f"usage_limit_reset: {pattern!r} needs exactly one named group of: {', '.join(_RESET_GROUPS)}"
    return None


def _missing(spec: dict, env: dict[str, str]) -> str | None:
    """Why this agent cannot run here (None: it can)."""
    if spec["kind"] == "http":
        key = spec.get("api_key_env")
        return f"{key} is not set" if key and not env.get(key) else None
    check = spec.get("check")
    if check:
        try:
            ok = subprocess.run(check, check=False, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return None if ok else f"its check command failed: {' '.join(check)}"
    exe = spec["argv"][0]
    return None if find_tool(exe, env) else f"'{exe}' not found on PATH"


def installed_agents(agents: dict, env: dict[str, str] | None = None) -> list[str]:
    """The agents usable on this machine, in registry order: cli on PATH (or passing ``check``), http with its key."""
    env = dict(os.environ) if env is None else env
    return [name for name, spec in agents.items() if _missing(spec, env) is None]


def default_agent(agents: dict, env: dict[str, str]) -> str | None:
    """The agent a task that names none runs with: the first installed one."""
    found = installed_agents(agents, env)
    return found[0] if found else None


# ---------------------------------------------------------------- argv

def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _values(prompt: str, model: str | None, output_file: Path | None, cwd: Path) -> dict[str, str]:
    return {"prompt": prompt, "model": model or "", "output_file": str(output_file or ""), "cwd": str(cwd)}


def build_argv(spec: dict, prompt: str, *, model: str | None, output_file: Path | None, cwd: Path) -> list[str]:
    values = _values(prompt, model, output_file, cwd)
    model_args = [_fill(a, values) for a in spec.get("model_args") or []] if model else []
    out: list[str] = []
    for element in spec["argv"]:
        if element == "{model_args}":
            out += model_args
        elif "{model}" in element and not model:
            if out and out[-1].startswith("-"):
                out.pop()  # its flag goes too
        else:
            out.append(_fill(element, values))
    if "{model_args}" not in spec["argv"]:
        out += model_args
    return out


# ---------------------------------------------------------------- output parsing

@dataclass
class Reply:
    text: str = ""
    error: str | None = None  # the agent reported a failure in its output
    extra: dict = field(default_factory=dict)


def _json_doc(stdout: str) -> Any:
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


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != ""}


def parse_claude(doc: Any) -> Reply | None:
    if isinstance(doc, list):  # --verbose json: the messages, the last 'result' one is the summary
        doc = next((m for m in reversed(doc) if isinstance(m, dict) and m.get("type") == "result"), None)
    if not isinstance(doc, dict) or not ("result" in doc or "is_error" in doc):
        return None
    usage = doc.get("usage") or {}
    models = doc.get("modelUsage") or {}
    cost = doc.get("total_cost_usd", doc.get("cost_usd"))
    extra = _clean({
        "cost_usd": cost if isinstance(cost, int | float) else None,
        "input_tokens": _int(usage.get("input_tokens")),
        "output_tokens": _int(usage.get("output_tokens")),
        "session_id": doc.get("session_id"),
        "model": next(iter(models), None) if isinstance(models, dict) else None,
        "num_turns": _int(doc.get("num_turns")),
    })
    text = str(doc.get("result") or "")
    failed = bool(doc.get("is_error")) or str(doc.get("subtype", "success")).startswith("error")
    error = (last_line(text) or f"claude reported {doc.get('subtype', 'an error')}") if failed else None
    return Reply(text, error, extra)


def parse_gemini(doc: Any) -> Reply | None:
    if not isinstance(doc, dict) or not ("response" in doc or "error" in doc):
        return None
    models = ((doc.get("stats") or {}).get("models") or {})
    tokens = [(m.get("tokens") or {}) for m in models.values() if isinstance(m, dict)]
    extra = _clean({
        "input_tokens": sum(_int(t.get("prompt")) or 0 for t in tokens) if tokens else None,
        "output_tokens": sum(_int(t.get("candidates")) or 0 for t in tokens) if tokens else None,
        "session_id": doc.get("session_id") or doc.get("sessionId"),
        "model": next(iter(models)) if len(models) == 1 else (", ".join(models) or None),
    })
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
    extra = _clean({
        "input_tokens": _int(usage.get("prompt_tokens")),
        "output_tokens": _int(usage.get("completion_tokens")),
        "model": doc.get("model"),
        "session_id": doc.get("id"),
    })
    return Reply(str(message.get("content") or ""), None, extra)


_CODEX_TOKENS = re.compile(r"tokens used:?\s*([\d,]+)", re.I)


def parse_output(kind: str, stdout: str, *, last_message: str | None = None, stderr: str = "") -> Reply:
    """An agent's output -> reply text + usage; text that does not parse is the reply as is."""
    if kind == "codex-last-message":
        m = _CODEX_TOKENS.findall(stderr) or _CODEX_TOKENS.findall(stdout)
        extra = {"total_tokens": int(m[-1].replace(",", ""))} if m else {}
        return Reply((last_message if last_message is not None else stdout).strip(), None, extra)
    parser = {"claude-json": parse_claude, "gemini-json": parse_gemini, "openai-chat": parse_openai}.get(kind)
    parsed = parser(_json_doc(stdout)) if parser and stdout.strip() else None
    return parsed if parsed is not None else Reply(stdout.strip())


# ---------------------------------------------------------------- usage limits: when does it reset?

MAX_LIMIT_WAIT = 7 * 86400.0  # a reset further away than this is clamped (a misread, or a weekly cap)
_RESET_GROUPS = ("epoch", "seconds", "delay", "at")
_UNIT = r"(?:days?|d|hours?|hrs?|h|minutes?|mins?|ms|m|seconds?|secs?|s)(?![a-z])"
_DELAY = rf"(?:\d+(?:\.\d+)?\s*{_UNIT}[\s,]*(?:and\s+)?)+"
_CLOCK = r"\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?|\d{1,2}:\d{2}"
_DATE = r"(?:[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:\d{4},?\s+)?)?"
_TZ = r"(?:\s*\((?P<tz>[A-Za-z][A-Za-z0-9_+\-/]*)\))?"
# The shapes the agent CLIs print (first match wins), e.g.
#   claude: "Claude AI usage limit reached|1735689600", "5-hour limit reached ∙ resets 3pm",
#           "You've hit your session limit · resets 3:30pm (Europe/Berlin)", "Your limit will reset at 1pm (Etc/GMT+5)"
#   codex:  "try again in 2 hours 5 minutes", "Try again in 37s", "try again at Jul 5th, 2026 8:19 PM",
#           {"resets_at": 1775317531, "resets_in_seconds": 602705}
#   gemini: "Please retry in 37.5s", "retryDelay": "37s";  http: "Retry-After: 20"; groq: "try again in 7.66s"
RESET_PATTERNS = [
    r"limit reached\|(?P<epoch>\d{9,11})\b",
    r"resets_at\W{0,4}(?P<epoch>\d{9,11})\b",
    r"resets_in_seconds\W{0,4}(?P<seconds>\d+(?:\.\d+)?)",
    r"retryDelay\W{0,4}(?P<seconds>\d+(?:\.\d+)?)s",
    r"(?i)Retry-After:\s*(?P<seconds>\d+)",
    rf"(?i)(?:try again|retry) in\s+(?P<delay>{_DELAY})",
    rf"(?i)(?:resets?|try again)(?:\s+at)?\s+(?P<at>{_DATE}(?:{_CLOCK})){_TZ}",
]
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _delay_seconds(text: str) -> float:
    """'2 hours 5 minutes' / '1m30s' / '37.5s' -> seconds."""
    total = 0.0
    for num, unit in re.findall(rf"(\d+(?:\.\d+)?)\s*({_UNIT})", text, re.I):
        unit = unit.lower()
        total += float(num) * (0.001 if unit == "ms" else _UNIT_SECONDS[unit[0]])
    return total


def _zone(name: str | None, local: dt.tzinfo | None) -> dt.tzinfo:
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return local or dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


def _at_time(text: str, zone: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    """'3pm', '3:30 PM', '15:30', 'Jul 5th, 2026 8:19 PM' -> the next such moment (a time passed
    less than 5 minutes ago is that moment, not tomorrow's: the message was printed just before)."""
    m = re.search(r"(\d{1,2})(?::(\d{2}))?\s*(?:([ap])\.?m\.?)?\s*$", text, re.I)
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3):
        hour = hour % 12 + (12 if m.group(3).lower() == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    local_now = now.astimezone(zone)
    d = re.match(r"([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(?:(\d{4}),?\s+)?", text)
    step = dt.timedelta(days=1)
    try:
        if d and d.group(1).lower() in _MONTHS:
            year = int(d.group(3) or local_now.year)
            base = dt.datetime(year, _MONTHS[d.group(1).lower()], int(d.group(2)), hour, minute, tzinfo=zone)
            step = dt.timedelta(days=365) if not d.group(3) else dt.timedelta(0)
        else:
            base = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        return None
    if step and base < now - dt.timedelta(minutes=5):
        base += step
    return base


def _reset_from(m: re.Match, now: dt.datetime, local: dt.tzinfo | None) -> dt.datetime | None:
    g = m.groupdict()
    if g.get("epoch"):
        return dt.datetime.fromtimestamp(int(g["epoch"]), dt.timezone.utc)
    if g.get("seconds"):
        return now + dt.timedelta(seconds=float(g["seconds"]))
    if g.get("delay"):
        secs = _delay_seconds(g["delay"])
        return now + dt.timedelta(seconds=secs) if secs > 0 else None
    if g.get("at"):
        return _at_time(g["at"].strip(), _zone(g.get("tz"), local), now)
    return None


def usage_limit_reset(text: str, *, now: dt.datetime, patterns: list[str] | None = None,
                      local: dt.tzinfo | None = None) -> dt.datetime | None:
    """When a usage limit resets, read from the agent's output (UTC, clamped to now..now+7 days); None: not said.

    ``patterns`` (the agent's ``usage_limit_reset``) are tried before the built-in shapes;
    a time of day with no zone is in ``local`` (default: this machine's zone).
    """
    for pattern in [*(patterns or []), *RESET_PATTERNS]:
        for m in re.finditer(pattern, text):
            when = _reset_from(m, now, local)
            if when is not None:
                when = min(max(when, now), now + dt.timedelta(seconds=MAX_LIMIT_WAIT))
                return when.astimezone(dt.timezone.utc).replace(microsecond=0)
    return None


def limit_wait(reset: dt.datetime | None, previous: dict, *, now: dt.datetime, backoff: float,
               max_waits: int) -> tuple[dt.datetime, int] | None:
    """Until when a usage-limited task waits, and how many limit waits in a row this is.

    ``previous`` is the task's last result: a limit right after a limit counts on. With no
    reset in the output the wait is ``backoff`` seconds, doubling with each wait in a row
    (capped at 7 days). None once ``max_waits`` waits in a row are spent: then it is an
    ordinary failure (a limit that never lifts, e.g. no credit left, needs a person).
    """
    waits = int(previous.get("limit_waits") or 0) + 1 if previous.get("usage_limit") else 1
    if waits > max_waits:
        return None
    if reset is None:
        reset = now + dt.timedelta(seconds=min(backoff * 2 ** (waits - 1), MAX_LIMIT_WAIT))
    return reset, waits


# ---------------------------------------------------------------- running

def run_agent(name: str | None, prompt: str, *, agents: dict, cwd: str | Path | None, model: str | None,
              env: dict[str, str], timeout: float | None, log_path: Path,
              cancel: threading.Event | None = None, reply_limit: int | None = REPLY_LIMIT,
              echo: bool = False) -> HandlerResult:
    """Run one agent on one prompt in ``cwd`` (``~`` expanded; None -> HOME) and read its reply.

    Not installed, unknown, or a missing cwd -> needs_human; a non-zero exit or an
    error the agent reports -> failed (tails kept). ``extra`` carries ``reply``,
    ``agent`` and whatever usage the agent reports (cost_usd, tokens, session_id, model).
    ``echo`` copies the agent's output to this terminal as it comes (``fleetq run``).
    """
    try:
        name = name or default_agent(agents, env)
        if not name:
            raise Stop(f"no agent is installed on this machine (known: {', '.join(agents) or 'none'})")
        spec = agents.get(name)
        if spec is None:
            raise Stop(f"unknown agent '{name}' (config/agents.yaml has: {', '.join(agents) or 'none'})")
        wd = resolve_dir(cwd, env)
        why = _missing(spec, env)
        if why:
            raise Stop(f"agent '{name}' is not installed on this machine: {why}")
    except Stop as stop:
        return stop.result()
    job = _Job(name=name, spec=spec, prompt=prompt, model=model or spec.get("default_model"), cwd=wd,
               env={**env, **{k: str(v) for k, v in (spec.get("env") or {}).items()}},
               timeout=timeout, log_path=log_path, cancel=cancel, echo=echo)
    res = _run_http(job) if spec["kind"] == "http" else _run_cli(job)
    if job.model:
        res.extra.setdefault("model", job.model)
    _finish(res, name, spec, reply_limit)
    return res


@dataclass
class _Job:
    """One agent run, resolved: the spec, the model, the directory and the child environment."""

    name: str
    spec: dict
    prompt: str
    model: str | None
    cwd: Path
    env: dict[str, str]
    timeout: float | None
    log_path: Path
    cancel: threading.Event | None
    echo: bool


def _run_cli(job: _Job) -> HandlerResult:
    spec = job.spec
    with tempfile.TemporaryDirectory(prefix="fleetq-agent-") as tmp:
        out_file = Path(tmp) / "last-message.txt"
        argv = build_argv(spec, job.prompt, model=job.model, output_file=out_file, cwd=job.cwd)
        values = _values(job.prompt, job.model, out_file, job.cwd)
        stdin = _fill(spec["stdin"], values) if spec.get("stdin") else None
        proc = run_command(argv, cwd=job.cwd, env=job.env, timeout=job.timeout, log_path=job.log_path,
                           cancel=job.cancel, stdin_text=stdin, capture_stdout=True, echo_stderr=job.echo,
                           echo_stdout=job.echo and spec["output"] == "text")
        last = out_file.read_text(encoding="utf-8", errors="replace") if out_file.exists() else None
    res = from_proc(proc, job.name, job.timeout)
    reply = parse_output(spec["output"], proc.stdout, last_message=last, stderr=proc.stderr_tail)
    res.extra.update(reply.extra, reply=reply.text)
    if last is not None:
        _append_log(job.log_path, f"\n# last message ({out_file.name}):\n{last}\n")
    if reply.error and res.outcome == DONE:
        res.outcome, res.error = FAILED, f"{job.name} reported an error: {reply.error}"
    elif reply.error and res.outcome == FAILED and not (proc.timed_out or proc.cancelled):
        res.error = f"{job.name} exited with code {proc.exit_code}: {reply.error}"
    return res


def _finish(res: HandlerResult, name: str, spec: dict, reply_limit: int | None) -> None:
    """Agent name and model in extra, usage-limit flag, reply bounded for the task file."""
    res.extra["agent"] = name
    if res.outcome == FAILED:
        haystack = "\n".join([res.error or "", res.stderr_tail, res.stdout_tail, str(res.extra.get("reply", ""))])
        for pattern in spec.get("usage_limit_patterns") or []:
            if re.search(pattern, haystack):
                res.extra["usage_limit"] = True
                reset = usage_limit_reset(haystack, now=now_utc(), patterns=spec.get("usage_limit_reset"))
                if reset is not None:
                    res.extra["usage_limit_reset"] = fmt_time(reset)
                res.error = f"usage limit reached: {res.error}"
                break
    reply = str(res.extra.get("reply") or "")
    if reply_limit is not None and len(reply) > reply_limit:
        res.extra["reply"] = reply[:reply_limit]
        res.extra["reply_truncated"] = True


def _append_log(log_path: Path, text: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", errors="replace") as f:
        f.write(text)


# ---------------------------------------------------------------- http (OpenAI-compatible chat completions)

def _post(url: str, key: str | None, body: dict, timeout: float | None, box: dict) -> None:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "fleetq"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout or 600) as resp:
            box["status"], box["body"] = resp.status, resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        box["status"], box["body"] = e.code, e.read().decode("utf-8", errors="replace")
        box["retry_after"] = e.headers.get("Retry-After") if e.headers else None
    except (urllib.error.URLError, OSError, ValueError) as e:
        box["exc"] = getattr(e, "reason", None) or e


def _wait_thread(worker: threading.Thread, timeout: float | None, cancel: threading.Event | None) -> str | None:
    """Wait for ``worker``; the reason it was abandoned (cancelled, timed out), or None when it finished."""
    started = time.monotonic()
    while True:
        worker.join(0.05)
        if not worker.is_alive():
            return None
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if timeout is not None and time.monotonic() - started >= timeout:
            return f"timed out after {timeout:g}s"


def _run_http(job: _Job) -> HandlerResult:
    """One POST in a helper thread, so cancel and timeout take effect at once (the thread is left to end)."""
    spec = job.spec
    base = (job.env.get(spec.get("base_url_env") or "") or spec.get("base_url") or "").rstrip("/")
    url = f"{base}/chat/completions"
    body = {"model": job.model, "messages": [{"role": "user", "content": job.prompt}]}
    key = job.env.get(spec.get("api_key_env") or "")
    _append_log(job.log_path, f"$ POST {url} (model {job.model})\n")
    box: dict[str, Any] = {}
    started = time.monotonic()
    worker = threading.Thread(target=_post, args=(url, key, body, job.timeout, box), daemon=True)
    worker.start()
    stopped = _wait_thread(worker, job.timeout, job.cancel)
    if isinstance(box.get("exc"), TimeoutError) and job.timeout is not None:  # urllib's own deadline hit first
        stopped = f"timed out after {job.timeout:g}s"
    res = HandlerResult(outcome=FAILED, duration=time.monotonic() - started)
    text = "" if stopped else box.get("body", "")
    res.stdout_tail = tail_text(text.encode(), 4000)
    if stopped:
        res.error = stopped
        if stopped != "cancelled":
            res.extra["timed_out"] = True
    elif "exc" in box:
        res.error = f"cannot reach {url}: {box['exc']}"
    elif box.get("status") != 200:
        res.error = f"HTTP {box.get('status')} from {url}: {_api_error(text)}"
        if box.get("retry_after"):  # read by usage_limit_reset when the agent's patterns call this a limit
            res.error += f" (Retry-After: {box['retry_after']})"
    else:
        reply = parse_output(spec["output"], text)
        res.outcome = DONE
        res.extra.update(reply.extra, reply=reply.text)
        if not reply.text and not isinstance(_json_doc(text), dict):
            res.outcome, res.error = FAILED, "the API answered with something that is not a chat completion"
    _append_log(job.log_path, f"{res.extra.get('reply') or text}\n# {res.error or 'done'} after {res.duration:.1f}s\n")
    return res


def _api_error(body: str) -> str:
    doc = _json_doc(body) if body.strip() else None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return str(err.get("message") or err.get("code") or err)
    return last_line(body) or "(no body)"

