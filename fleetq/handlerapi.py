"""What a task-type handler receives and returns, and the helpers handlers share.

A handler module (built-in ``fleetq.handlers.<type>`` or a fleet repo's
``handlers/<type>.py``) defines ``DEFAULT_TIMEOUT`` and ``run(ctx) -> HandlerResult``.
Expected failures are results, not exceptions: a non-zero exit is ``failed``; a
missing or invalid payload field, a missing directory or a tool that is not
installed is ``needs_human`` (retrying elsewhere or later will not fix it).

Most built-in handlers are "pick a command for the project in ``payload.cwd``
and run it there": they describe their choices as :class:`Recipe` rows and call
:func:`run_project`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq.errors import last_line
from fleetq.run.procs import ProcResult, run_command

DONE, FAILED, NEEDS_HUMAN = "done", "failed", "needs_human"


@dataclass
class HandlerContext:
    task_id: str
    task: dict  # plain validated task data (id, type, title, priority, agent, timeout, payload, ...)
    payload: dict  # task['payload'] (never None)
    machine: str
    attempt: int
    fleet_dir: Path  # the fleet clone's working tree root
    log_path: Path  # full log of this run: append stdout+stderr here
    env: dict[str, str]  # base environment for child processes (has FLEETQ_TASK_ID, FLEETQ_MACHINE, FLEETQ_ATTEMPT)
    agents: dict  # agents registry, as fleetq.run.agents.registry.load_agents(fleet_dir) returns it
    cancel: threading.Event  # set on cancel/shutdown: kill the tree, outcome 'failed', error 'cancelled'
    timeout: float | None  # task-level override; None -> the handler's DEFAULT_TIMEOUT


@dataclass
class HandlerResult:
    outcome: str  # 'done' | 'failed' | 'needs_human'
    exit_code: int | None = None
    duration: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    error: str | None = None
    extra: dict = field(default_factory=dict)  # cost_usd, input_tokens, output_tokens, session_id, model, reply, ...

    def to_dict(self) -> dict:
        """Plain data for the task file's ``result``: extra keys flattened in, empty values left out."""
        out: dict[str, Any] = {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3) if self.duration else None,
            "error": self.error,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return {k: v for k, v in out.items() if v is not None and v not in ("", {}, [])}


class Stop(Exception):
    """An expected failure found before anything ran; :func:`guard` turns it into a result."""

    def __init__(self, error: str, outcome: str = NEEDS_HUMAN) -> None:
        super().__init__(error)
        self.error = error
        self.outcome = outcome

    def result(self) -> HandlerResult:
        return HandlerResult(outcome=self.outcome, error=self.error)


def guard(fn: Callable[..., HandlerResult], *args: Any, **kwargs: Any) -> HandlerResult:
    try:
        return fn(*args, **kwargs)
    except Stop as stop:
        return stop.result()


# ---------------------------------------------------------------- payload, cwd, timeout, tools


def effective_timeout(ctx: HandlerContext, default: float) -> float | None:
    """The task's timeout, else the handler's default; zero or less means no limit."""
    t = ctx.timeout if ctx.timeout is not None else default
    return None if t is None or t <= 0 else float(t)


def text_field(payload: dict, key: str, *, required: bool = False) -> str | None:
    """A string payload field (numbers accepted and turned to text); Stop when required and absent."""
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise Stop(f"payload.{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Stop(f"payload.{key} must be text, not {type(value).__name__}")
    return str(value)


def home_dir(env: dict[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home()))


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def resolve_dir(path: str | os.PathLike | None, env: dict[str, str], *, what: str = "cwd") -> Path:
    """Expand ``~`` and ``$VARS`` (against the child's env) and check the directory exists; None -> HOME."""
    if path is None or str(path) == "":
        return home_dir(env)
    text = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), str(path))
    if text == "~" or text.startswith("~/"):
        text = str(home_dir(env)) + text[1:]
    p = Path(os.path.expanduser(text))
    if not p.is_dir():
        raise Stop(f"{what} does not exist: {path}" if not p.exists() else f"{what} is not a directory: {path}")
    return p


def payload_dir(ctx: HandlerContext, key: str = "cwd", *, required: bool = True) -> Path:
    value = text_field(ctx.payload, key, required=required)
    return resolve_dir(value, ctx.env, what=key)


def find_tool(name: str, env: dict[str, str], cwd: Path | None = None) -> str | None:
    """Where ``name`` would run from: a relative path (./gradlew) against cwd, else the child's PATH."""
    if "/" in name:
        p = Path(name) if cwd is None or Path(name).is_absolute() else cwd / name
        return str(p) if p.exists() else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def require_tool(name: str, env: dict[str, str], cwd: Path | None = None) -> None:
    if find_tool(name, env, cwd) is None:
        raise Stop(f"{name} is not installed on this machine (not found on PATH)")


# ---------------------------------------------------------------- results


def from_proc(proc: ProcResult, what: str, timeout: float | None, **extra: Any) -> HandlerResult:
    """A finished command -> a result: exit 0 done, anything else failed with one clear line."""
    res = HandlerResult(
        outcome=DONE,
        exit_code=proc.exit_code,
        duration=proc.duration,
        stdout_tail=proc.stdout_tail,
        stderr_tail=proc.stderr_tail,
        extra=dict(extra),
    )
    if proc.log_error:  # a full disk: the run was stopped, its output is lost
        res.outcome, res.error = FAILED, proc.log_error
    elif proc.cancelled:
        res.outcome, res.error = FAILED, "cancelled"
    elif proc.timed_out:
        res.outcome, res.error = FAILED, f"timed out after {timeout:g}s"
        res.extra["timed_out"] = True
    elif proc.exit_code != 0:
        res.outcome = FAILED
        code = "an unknown status" if proc.exit_code is None else f"code {proc.exit_code}"
        why = last_line(proc.stderr_tail, proc.stdout_tail)
        res.error = f"{what} exited with {code}" + (f": {why}" if why else "")
    return res


def run_in(
    ctx: HandlerContext, argv: list[str] | str, cwd: Path, default_timeout: float, *, what: str | None = None
) -> HandlerResult:
    """Run a command (list = argv, str = shell script) in ``cwd`` for this task."""
    timeout = effective_timeout(ctx, default_timeout)
    proc = run_command(
        argv,
        cwd=cwd,
        env=ctx.env,
        timeout=timeout,
        log_path=ctx.log_path,
        cancel=ctx.cancel,
        shell=isinstance(argv, str),
    )
    label = what or (argv[0] if isinstance(argv, list) else "script")
    return from_proc(proc, label, timeout, command=argv if isinstance(argv, str) else shlex.join(argv))


# ---------------------------------------------------------------- "pick a command for this project"


@dataclass(frozen=True)
class Recipe:
    """One way to build/test/lint a kind of project.

    ``name`` is what ``payload.runner`` (or the handler's choice key) names to force it;
    ``detect`` says whether a directory looks like this kind of project;
    ``argv`` builds the command from the project dir and the context (it may raise
    Stop for a missing payload field).
    """

    name: str
    detect: Callable[[Path], bool]
    argv: Callable[[Path, HandlerContext], list[str]]


def pick_recipe(cwd: Path, payload: dict, recipes: Sequence[Recipe], choice_keys: Sequence[str], what: str) -> Recipe:
    names = [r.name for r in recipes]
    for key in choice_keys:
        forced = text_field(payload, key)
        if forced:
            for r in recipes:
                if r.name == forced:
                    return r
            raise Stop(f"payload.{key} '{forced}' is not one of: {', '.join(names)}")
    for r in recipes:
        if r.detect(cwd):
            return r
    hint = "set payload.command" + (f", or payload.{choice_keys[0]}" if choice_keys else "")
    raise Stop(f"cannot tell how to {what} in {cwd} (looked for: {', '.join(names)}); {hint}")


def run_project(
    ctx: HandlerContext,
    recipes: Sequence[Recipe],
    *,
    what: str,
    default_timeout: float,
    choice_keys: Sequence[str] = ("runner",),
    cwd_key: str = "cwd",
) -> HandlerResult:
    """payload.command (a shell line) if given, else the first recipe that fits the project, run in cwd."""

    def go() -> HandlerResult:
        cwd = payload_dir(ctx, cwd_key)
        command = text_field(ctx.payload, "command")
        if command:
            return run_in(ctx, command, cwd, default_timeout, what="command")
        recipe = pick_recipe(cwd, ctx.payload, recipes, choice_keys, what)
        argv = recipe.argv(cwd, ctx)
        require_tool(argv[0], ctx.env, cwd)
        return run_in(ctx, argv, cwd, default_timeout, what=recipe.name)

    return guard(go)


# ---------------------------------------------------------------- project detection, shared by recipes


def has_any(cwd: Path, *patterns: str) -> bool:
    """Any file matching one of the glob patterns directly in cwd (not recursive: stays fast)."""
    return any(next(cwd.glob(p), None) is not None for p in patterns)


def package_json(cwd: Path) -> dict:
    try:
        data = json.loads((cwd / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def npm_uses(cwd: Path, dep: str) -> bool:
    """package.json names ``dep`` as a dependency, a config key, or in a script."""
    pj = package_json(cwd)
    deps = {**(pj.get("dependencies") or {}), **(pj.get("devDependencies") or {})}
    scripts = " ".join(str(v) for v in (pj.get("scripts") or {}).values())
    return dep in deps or dep in pj or dep in scripts


def is_python_project(cwd: Path) -> bool:
    if has_any(cwd, "pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini"):
        return True
    tests = cwd / "tests"
    return tests.is_dir() and has_any(tests, "*.py")


def is_gradle_project(cwd: Path) -> bool:
    return has_any(cwd, "gradlew", "build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts")


def is_xcode_project(cwd: Path) -> bool:
    return has_any(cwd, "*.xcworkspace", "*.xcodeproj", "Package.swift")


def python_tool(cwd: Path, env: dict[str, str], tool: str) -> list[str]:
    """A Python tool from the project's virtualenv if it has one, else PATH, else ``python3 -m tool``."""
    for venv in (".venv", "venv"):
        exe = cwd / venv / "bin" / tool
        if exe.exists():
            return [str(exe)]
    if find_tool(tool, env):
        return [tool]
    return ["python3", "-m", tool]


def gradle(cwd: Path, *tasks: str) -> list[str]:
    """The project's wrapper when it has one (run through sh: it is often not executable), else gradle."""
    if (cwd / "gradlew").exists():
        return ["sh", "./gradlew", *tasks]
    return ["gradle", *tasks]


def xcodebuild(cwd: Path, payload: dict, action: str) -> list[str]:
    """xcodebuild with the workspace/project and scheme from the payload (found in cwd if not given)."""
    scheme = text_field(payload, "scheme", required=True)
    argv = ["xcodebuild"]
    workspace, project = text_field(payload, "workspace"), text_field(payload, "project")
    if not workspace and not project:
        ws = sorted(cwd.glob("*.xcworkspace"))
        pj = sorted(cwd.glob("*.xcodeproj"))
        workspace = ws[0].name if ws else None
        project = None if ws else (pj[0].name if pj else None)
    if workspace:
        argv += ["-workspace", workspace]
    elif project:
        argv += ["-project", project]
    argv += ["-scheme", str(scheme)]
    for key in ("configuration", "destination", "sdk"):
        value = text_field(payload, key)
        if value:
            argv += [f"-{key}", value]
    return [*argv, action]
