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
``output``           how to read the reply: text | claude-json | gemini-json | codex-json | codex-last-message
                     | openai-chat
``stdin``            optional template sent on stdin (e.g. ``"{prompt}"`` for very long prompts)
``env``              extra environment variables for the agent
``check``            argv that must exit 0 for the agent to count as installed (default: argv[0] on PATH);
                     where the CLI has a cheap offline "am I usable" command (claude auth status), that
``check_hint``       what to tell a person when ``check`` fails (else its last line of output)
``needs_human_patterns``  ``{pattern: regex, say: text}`` items: a failed run whose error matches one goes
                     to needs_human at once, its error ``say`` (what a person must do: log in, set a key,
                     add credit); tried before the usage-limit patterns
``usage_limit_patterns``  regexes that, found in the agent's error, mark a result as hitting a usage limit
                     (a provider's HTTP 429 the agent reports counts too)
``usage_limit_reset``     regexes (tried before the built-in ones) that find when the limit resets, each
                     with one named group: ``epoch`` (unix seconds), ``seconds``, ``delay`` ("2 hours 5
                     minutes", "37.5s"), ``at`` (a time of day or a date and time; optionally ``tz``) or
                     ``daily`` (the next midnight Pacific, when Google's daily quotas reset)
``base_url``, ``base_url_env``, ``api_key_env``   http: endpoint, env var overriding it, env var with the key
``resume_args``      cli: argv that resumes the session ``{session}`` (``fleetq reply``), put where an argv
                     element ``{resume_args}`` stands (else just before the first ``--``, else at the end)
``resume_argv``      cli: a whole argv for a resumed run instead (``{session}`` and the argv placeholders);
                     an agent with neither cannot be replied to
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.errors import FleetqError, last_line
from fleetq.handlerapi import find_tool
from fleetq.layout import AGENTS
from fleetq.run.agents.limits import RESET_GROUPS

AGENTS_FILE = AGENTS
AGENT_TIMEOUT = 1800.0  # seconds an agent run may take unless the task (or `fleetq run --timeout`) says
OUTPUTS = ("text", "claude-json", "gemini-json", "codex-json", "codex-last-message", "openai-chat")
KINDS = ("cli", "http")

Spec = dict[str, Any]  # one agent's spec, as in config/agents.yaml
Registry = dict[str, Spec]  # name -> spec, in registry order

BUILTIN_AGENTS: Registry = {
    "claude": {
        "kind": "cli",
        # the prompt after "--", so one starting with '-' is text (-p is a flag; the prompt is positional)
        "argv": [
            "claude",
            "-p",
            "--dangerously-skip-permissions",
            "--output-format",
            "json",
            "{model_args}",
            "{resume_args}",
            "--",
            "{prompt}",
        ],
        "model_args": ["--model", "{model}"],
        # claude-code 2.1.332: -p --resume <session-id> continues that conversation (same session id)
        "resume_args": ["--resume", "{session}"],
        "output": "claude-json",
        # offline, ~0.3 s: exit 1 when neither a key nor a login is configured (it does not try the key)
        "check": ["claude", "auth", "status"],
        "check_hint": "not logged in: run `claude /login` or set ANTHROPIC_API_KEY",
        # claude-code 2.1.332: its result text on is_error, and its startup refusal on stderr
        "needs_human_patterns": [
            {
                "pattern": r"Credit balance is too low",
                "say": "claude: the Anthropic account's credit balance is too low: add credit (Plans & Billing)",
            },
            {
                "pattern": r"Invalid API key|Please run /login|Not logged in|Failed to authenticate",
                "say": "claude is not logged in or its key was refused: run `claude /login` (or set ANTHROPIC_API_KEY)",
            },
            {
                "pattern": r"cannot be used with root/sudo privileges",
                "say": "claude refuses --dangerously-skip-permissions as root: run the worker as another user, "
                "or set IS_SANDBOX=1 for it if this machine is a sandbox (README: Agents)",
            },
        ],
        "usage_limit_patterns": [
            r"hit your (?:[\w-]+ ){0,4}limit",
            r"usage limit reached",
            r"\blimit reached\b.*\bresets?\b",
        ],
    },
    "gemini": {
        "kind": "cli",
        # --skip-trust: 0.61 trusts no folder by default (a headless run exits 55, --yolo downgraded),
        # and isolated runs get a fresh worktree each time; --prompt=: a prompt may start with '-'
        "argv": ["gemini", "--skip-trust", "--yolo", "--output-format", "json", "--prompt={prompt}"],
        "model_args": ["-m", "{model}"],
        # gemini-cli 0.61: --resume takes "latest", an index or a session UUID, looked up among the
        # sessions of the project at the cwd (a reply runs in the chain's first worktree path)
        "resume_args": ["--resume={session}"],
        "output": "gemini-json",
        # gemini-cli 0.61 bundle: validateNonInteractiveAuth, FatalAuthenticationError, trustedFolders
        "needs_human_patterns": [
            {  # a model with no free tier: Google answers 429 with "limit: 0", which no wait lifts
                "pattern": r"Quota exceeded for metric: [^\n]*, limit: 0\b",
                "say": "gemini: this key has no quota for the model (limit: 0): use another model or a billed key",
            },
            {
                "pattern": r"API key not valid|API_KEY_INVALID",
                "say": "gemini's API key was refused: set GEMINI_API_KEY to a valid key",
            },
            {
                "pattern": r"must specify the GEMINI_API_KEY|Please set an Auth method"
                r"|Manual authorization is required",
                "say": "gemini is not logged in: set GEMINI_API_KEY, or run `gemini` once in a terminal to log in",
            },
            {
                "pattern": r"not running in a trusted directory",
                "say": "gemini does not trust this folder: keep --skip-trust in its argv (or set "
                "GEMINI_CLI_TRUST_WORKSPACE=true)",
            },
        ],
        # TerminalQuotaError "You have exhausted your daily quota on this model." (waits for the daily
        # reset); RetryableQuotaError "... Please retry in 37.5s." (per minute); both report code 429
        "usage_limit_patterns": [r"exhausted your daily quota", r"RESOURCE_EXHAUSTED", r"Quota exceeded for metric"],
    },
    "codex": {
        "kind": "cli",
        # --json: events on stdout, no prompt echo; no endless "Reconnecting..." when the network is gone
        "argv": [
            "codex",
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "-c",
            "features.unbounded_connection_retries=false",
            "--output-last-message",
            "{output_file}",
            "{model_args}",
            "{resume_args}",
            "--",
            "{prompt}",
        ],
        "model_args": ["-m", "{model}"],
        # codex 0.171: `codex exec [exec options] resume SESSION_ID [PROMPT]`; exec's options go before it
        "resume_args": ["resume", "{session}"],
        "output": "codex-json",
        # codex-rs: protocol/src/error.rs, codex-api/src/api_bridge.rs, core/src/responses_retry.rs (0.171)
        "needs_human_patterns": [
            {
                "pattern": r"Quota exceeded\. Check your plan and billing",
                "say": "codex: the OpenAI account has no quota left: check its plan and billing",
            },
            {
                "pattern": r"401 Unauthorized|Incorrect API key|didn't provide an API key|Missing environment variable"
                r"|Not logged in|refresh token",
                "say": "codex is not logged in or its key was refused: run `codex login` (or set the key it names)",
            },
        ],
        "usage_limit_patterns": [
            r"You[’']ve hit your usage limit",
            r"usage_limit_reached",
            r"exceeded retry limit, last status: 429",
        ],
    },
    "groq": {
        "kind": "http",
        "base_url": "https://api.groq.com/openai/v1",
        "base_url_env": "GROQ_BASE_URL",
        "api_key_env": "GROQ_API_KEY",
        "default_model": "llama-3.3-70b-versatile",
        "output": "openai-chat",
        "needs_human_patterns": [
            {
                "pattern": r"HTTP 401|invalid_api_key|Invalid API Key",
                "say": "groq refused the API key: set GROQ_API_KEY to a valid key (console.groq.com/keys)",
            }
        ],
        "usage_limit_patterns": [r"rate_limit_exceeded", r"Rate limit reached"],
    },
}


def load_agents(fleet_dir: Path | None) -> Registry:
    """Built-in agents overlaid with ``<fleet_dir>/config/agents.yaml``; every spec validated."""
    return agents_from(yamlio.read_file(Path(fleet_dir) / AGENTS_FILE) if fleet_dir is not None else None)


def agents_from(data: Any) -> Registry:
    """Built-in agents overlaid with a parsed config/agents.yaml (None: none); every spec validated."""
    agents = {name: dict(spec) for name, spec in BUILTIN_AGENTS.items()}
    where = AGENTS_FILE
    if data is not None:
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
    for key in (
        "argv",
        "model_args",
        "resume_args",
        "resume_argv",
        "check",
        "usage_limit_patterns",
        "usage_limit_reset",
    ):
        if not _str_list(spec, key):
            return f"{key} must be a list of strings"
    if not isinstance(spec.get("check_hint", ""), str):
        return "check_hint must be text"
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
    resume = [*(spec.get("resume_args") or []), *(spec.get("resume_argv") or [])]
    if resume and (http or not any("{session}" in a for a in resume)):
        return "resume_args/resume_argv are for cli agents and need a '{session}' element"
    for pattern in spec.get("usage_limit_patterns") or []:
        try:
            re.compile(pattern)
        except re.error as e:
            return f"usage_limit_patterns: {pattern!r} is not a valid regex ({e})"
    items = spec.get("needs_human_patterns") or []
    if not isinstance(items, list):
        return "needs_human_patterns must be a list of {pattern: regex, say: text}"
    for item in items:
        if not (isinstance(item, dict) and isinstance(item.get("pattern"), str) and isinstance(item.get("say"), str)):
            return f"needs_human_patterns: {item!r} must be a mapping with 'pattern' and 'say' (text)"
        try:
            re.compile(item["pattern"])
        except re.error as e:
            return f"needs_human_patterns: {item['pattern']!r} is not a valid regex ({e})"
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
        if not find_tool(check[0], env):
            return f"'{check[0]}' not found on PATH"
        try:
            proc = subprocess.run(
                check, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(check)}` could not run ({e})"
        if proc.returncode == 0:
            return None
        said = spec.get("check_hint") or last_line(proc.stderr, proc.stdout)
        return f"`{' '.join(check)}` exited {proc.returncode}" + (f": {said}" if said else "")
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
