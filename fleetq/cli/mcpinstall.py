"""`fleetq mcp install claude|gemini|codex`: register `fleetq mcp` with that agent CLI through its own `mcp add`.

Each CLI keeps its MCP servers in its own file and has a command that writes it (checked against the
pinned CLIs' `mcp add --help`): claude ``mcp add --scope S NAME -- CMD ARGS`` (~/.claude.json for
user, ./.mcp.json for project), gemini ``mcp add --scope S NAME CMD ARGS`` (~/.gemini/settings.json,
./.gemini/settings.json; it takes no ``--``), codex ``mcp add NAME -- CMD ARGS`` ($CODEX_HOME/config.toml,
default ~/.codex/config.toml; no scopes). The server is registered as an absolute interpreter path with
``-m fleetq --fleet <this fleet> mcp``, so it runs whatever the agent's working directory is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleetq.errors import FleetqError, NotFound, UsageError

CLIS = ("claude", "gemini", "codex")
SCOPES = ("user", "project")
TIMEOUT = 60.0


@dataclass
class Plan:
    cli: str
    add: list[str]  # the `mcp add` argv
    replace: list[str] | None  # run first when the name is taken (claude refuses to overwrite)
    config: Path  # the file the CLI writes


def config_file(cli: str, scope: str, cwd: Path) -> Path:
    home = Path(os.environ.get("HOME") or Path.home())
    if cli == "claude":
        return home / ".claude.json" if scope == "user" else cwd / ".mcp.json"
    if cli == "gemini":
        return (home if scope == "user" else cwd) / ".gemini" / "settings.json"
    return Path(os.environ.get("CODEX_HOME") or home / ".codex") / "config.toml"


def plan(cli: str, server: list[str], *, name: str, scope: str, exe: str | None = None) -> Plan:
    """What registering ``server`` (the full argv of `fleetq mcp`) with ``cli`` runs."""
    if cli not in CLIS:
        raise UsageError(f"mcp install: unknown agent CLI '{cli}' (one of {', '.join(CLIS)})")
    if scope not in SCOPES:
        raise UsageError(f"mcp install: --scope is user or project, not '{scope}'")
    exe = exe or cli
    cwd = Path.cwd()
    if cli == "claude":
        add = [exe, "mcp", "add", "--scope", scope, name, "--", *server]
        return Plan(cli, add, [exe, "mcp", "remove", "--scope", scope, name], config_file(cli, scope, cwd))
    if cli == "gemini":  # updates an existing entry itself
        return Plan(cli, [exe, "mcp", "add", "--scope", scope, name, *server], None, config_file(cli, scope, cwd))
    if scope != "user":
        raise UsageError("mcp install codex: codex keeps MCP servers only in its user config (no --scope project)")
    return Plan(cli, [exe, "mcp", "add", name, "--", *server], None, config_file(cli, scope, cwd))


def show(argv: list[str]) -> str:
    """An argv as a shell line a person can copy."""
    return shlex.join(argv)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise FleetqError(f"{show(argv[:3])} did not finish within {TIMEOUT:g}s") from None


def _said(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln.strip() for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.strip()]


def install(cli: str, server: list[str], *, name: str, scope: str) -> tuple[Plan, list[list[str]], list[str]]:
    """Run the CLI's own `mcp add`: (plan, the commands run, what the CLI said). Not installed: NotFound."""
    exe = shutil.which(cli)
    if exe is None:
        raise NotFound(
            f"{cli} is not installed here (not on PATH); `fleetq mcp install {cli} --print` shows the command"
        )
    p = plan(cli, server, name=name, scope=scope, exe=exe)
    ran = [p.add]
    proc = _run(p.add)
    said = _said(proc)
    if proc.returncode != 0 and p.replace is not None and any("already exists" in ln for ln in said):
        gone = _run(p.replace)
        ran = [p.replace, p.add]
        proc = _run(p.add)
        said = _said(gone) + _said(proc)
    if proc.returncode != 0:
        # codex ends with a stack backtrace: its "Error: ..." line is the one that says why
        why = next((ln for ln in said if ln.lower().startswith("error")), said[-1] if said else "")
        raise FleetqError(f"{cli} mcp add failed: {why or f'exit {proc.returncode}'}")
    return p, ran, said
