"""The agent registry: built-in agents, overlaid with the fleet's agents.yaml, validated.

Agents are data: an argv template (or an HTTP endpoint) per agent, no code per agent.

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

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.errors import FleetqError
from fleetq.handlerapi import find_tool
from fleetq.layout import AGENTS
from fleetq.run.agents.limits import RESET_GROUPS

AGENTS_FILE = AGENTS
OUTPUTS = ("text", "claude-json", "gemini-json", "codex-last-message", "openai-chat")
KINDS = ("cli", "http")

Spec = dict[str, Any]  # one agent's spec, as in config/agents.yaml
Registry = dict[str, Spec]  # name -> spec, in registry order

BUILTIN_AGENTS: Registry = {
    "claude": {
        "kind": "cli",
        "argv": ["claude", "-p", "{prompt}", "--dangerously-skip-permissions", "--output-format", "json"],
        "model_args": ["--model", "{model}"],
        "output": "claude-json",
        "usage_limit_patterns": [
            r"usage limit reached",
            r"\blimit reached\b.*\bresets?\b",
            r"hit your (?:\w+ )?limit",
            r"Credit balance is too low",
            r"rate_limit_error",
        ],
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
        "argv": [
            "codex",
            "exec",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "--output-last-message",
            "{output_file}",
            "{model_args}",
            "--",
            "{prompt}",
        ],
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


def load_agents(fleet_dir: Path | None) -> Registry:
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


def _str_list(spec: Spec, key: str) -> bool:
    value = spec.get(key)
    return value is None or (isinstance(value, list) and all(isinstance(x, str) for x in value))


def _validate(name: str, spec: Spec, where: str) -> None:
    """Check one spec (filling in kind/output defaults); the first problem is a FleetqError."""
    problem = _shape_problem(spec) or _content_problem(spec)
    if problem:
        raise FleetqError(f"{where}: agent '{name}': {problem}")


def _shape_problem(spec: Spec) -> str | None:
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


def _content_problem(spec: Spec) -> str | None:
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
        if len(groups & set(RESET_GROUPS)) != 1:
            return f"usage_limit_reset: {pattern!r} needs exactly one named group of: {', '.join(RESET_GROUPS)}"
    return None


def why_missing(spec: Spec, env: dict[str, str]) -> str | None:
    """Why this agent cannot run here (None: it can)."""
    if spec["kind"] == "http":
        key = spec.get("api_key_env")
        return f"{key} is not set" if key and not env.get(key) else None
    check = spec.get("check")
    if check:
        try:
            ok = (
                subprocess.run(
                    check,
                    check=False,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=10,
                ).returncode
                == 0
            )
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return None if ok else f"its check command failed: {' '.join(check)}"
    exe = spec["argv"][0]
    return None if find_tool(exe, env) else f"'{exe}' not found on PATH"


def installed_agents(agents: Registry, env: dict[str, str] | None = None) -> list[str]:
    """The agents usable on this machine, in registry order: cli on PATH (or passing ``check``), http with its key."""
    env = dict(os.environ) if env is None else env
    return [name for name, spec in agents.items() if why_missing(spec, env) is None]


def default_agent(agents: Registry, env: dict[str, str]) -> str | None:
    """The agent a task that names none runs with: the first installed one."""
    found = installed_agents(agents, env)
    return found[0] if found else None
