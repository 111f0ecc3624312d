"""The built-in handlers on tiny real projects, the handler API helpers, and the handler loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fleetq.errors import FleetqError
from fleetq.handlerapi import HandlerResult, Stop, effective_timeout, guard, pick_recipe, resolve_dir
from fleetq.run.handlers import available_types, load_handler
from support.handlers import make_ctx

pytestmark = pytest.mark.timeout(30)


def run(task_type: str, tmp_path: Path, env: dict[str, str], payload: dict, **task) -> HandlerResult:
    ctx = make_ctx(tmp_path, env, task_type, payload, **task)
    return load_handler(task_type, ctx.fleet_dir).run(ctx)


def bin_dir(tmp_path: Path, **scripts: str) -> str:
    """A directory of tiny executables (stand-ins for build tools that are absent here)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    return str(d)


def path_without(*tools: str) -> str:
    """PATH with the directories that hold these tools removed (to test 'tool not installed')."""
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not any((Path(d) / t).exists() for t in tools))


# ---------------------------------------------------------------- loader


def test_builtins_load_and_have_timeouts(tmp_path: Path, env: dict[str, str]) -> None:
    for t in ("agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint", "ios_build", "android_build"):
        mod = load_handler(t, tmp_path)
        assert callable(mod.run)
        assert mod.DEFAULT_TIMEOUT == (1800 if t == "agent_run" else 120)
    assert set(available_types(None)) >= {"agent_run", "android_build"}
    # the timeout a task gets: its own, else the handler's DEFAULT_TIMEOUT; zero or less = no limit
    lint = load_handler("lint", None).DEFAULT_TIMEOUT
    assert effective_timeout(make_ctx(tmp_path, env, "lint", {}), lint) == 120
    assert effective_timeout(make_ctx(tmp_path, env, "lint", {}, timeout=5), lint) == 5
    assert effective_timeout(make_ctx(tmp_path, env, "lint", {}, timeout=0), lint) is None


@pytest.mark.parametrize("bad", ["deploy", "../etc/passwd", "__init__", "Agent_Run", ""])
def test_unknown_type(tmp_path: Path, bad: str) -> None:
    with pytest.raises(FleetqError, match=f"unknown task type '{bad}'.*handlers/{bad}.py"):
        load_handler(bad, tmp_path)


def test_custom_handler_from_the_fleet_repo(tmp_path: Path, env: dict[str, str]) -> None:
    handlers = tmp_path / "fleet" / "handlers"
    handlers.mkdir(parents=True)
    src = handlers / "summarise_pr.py"
    src.write_text(
        "from dataclasses import dataclass\n"
        "from fleetq.handlerapi import HandlerResult\n"
        "DEFAULT_TIMEOUT = 5\n"
        "@dataclass\nclass Note:\n    text: str\n"
        "def run(ctx):\n    return HandlerResult('done', extra={'said': Note(ctx.payload['x']).text})\n"
    )
    first = load_handler("summarise_pr", tmp_path / "fleet")
    assert load_handler("summarise_pr", tmp_path / "fleet") is first  # cached
    assert run("summarise_pr", tmp_path, env, {"x": "hi"}).extra == {"said": "hi"}
    assert "summarise_pr" in available_types(tmp_path / "fleet")
    src.write_text(src.read_text().replace("'said'", "'told'") + "\n")  # edited: size changes
    assert load_handler("summarise_pr", tmp_path / "fleet") is not first
    assert run("summarise_pr", tmp_path, env, {"x": "hi"}).extra == {"told": "hi"}
    (handlers / "broken.py").write_text("def run(ctx:\n")
    with pytest.raises(FleetqError, match="handlers/broken.py failed to load: SyntaxError"):
        load_handler("broken", tmp_path / "fleet")
    (handlers / "norun.py").write_text("X = 1\n")
    with pytest.raises(FleetqError, match="no run"):
        load_handler("norun", tmp_path / "fleet")
    (handlers / "lint.py").write_text("def run(ctx):\n    return 'mine'\n")
    assert load_handler("lint", tmp_path / "fleet").run(None) == "mine"  # a fleet may replace a built-in


# ---------------------------------------------------------------- handler API


def test_result_to_dict_omits_empty_but_keeps_zero() -> None:
    res = HandlerResult(
        "done", exit_code=0, duration=1.23456, extra={"reply": "hi", "cost_usd": None, "outcome": "ignored"}
    )
    assert res.to_dict() == {"outcome": "done", "exit_code": 0, "duration": 1.235, "reply": "hi"}


def test_resolve_dir(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert resolve_dir("~", env) == tmp_path and resolve_dir(None, env) == tmp_path
    assert resolve_dir("$HOME", env) == tmp_path and resolve_dir("${HOME}/.", env) == tmp_path / "."
    (tmp_path / "f").write_text("")
    for bad, msg in (("~/nope", "cwd does not exist: ~/nope"), (str(tmp_path / "f"), "not a directory")):
        with pytest.raises(Stop, match=msg):
            resolve_dir(bad, env)
    assert guard(lambda: resolve_dir("/nope", env)).outcome == "needs_human"


# ---------------------------------------------------------------- agent_run


def test_agent_run(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    env["FAKE_AGENT_WRITE"] = "NOTES.md=written by the agent"
    res = run(
        "agent_run",
        tmp_path,
        env,
        {"prompt": "write notes", "agent": "gemini", "cwd": str(proj), "model": "gemini-2.5-flash"},
    )
    assert res.outcome == "done" and res.extra["agent"] == "gemini" and res.extra["model"] == "gemini-2.5-flash"
    assert (proj / "NOTES.md").read_text() == "written by the agent"
    assert "gemini did: write notes" in (tmp_path / "logs" / "t1.log").read_text()


def test_agent_run_defaults(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = run("agent_run", tmp_path, env, {"cwd": str(proj)}, title="say pong", agent="codex")
    assert res.outcome == "done" and res.extra["agent"] == "codex" and res.extra["reply"] == "pong"
    res = run("agent_run", tmp_path, env, {"prompt": "x", "agent": "-"})  # "-": no agent named
    assert res.extra["agent"] == "claude"
    res = run("agent_run", tmp_path, env, {}, title="")
    assert res.outcome == "needs_human" and "payload.prompt" in res.error
    res = run("agent_run", tmp_path, env, {"prompt": "x", "cwd": "~/missing"})
    assert res.outcome == "needs_human" and res.error == "cwd does not exist: ~/missing"


def test_agent_run_failure_and_task_timeout(tmp_path: Path, env: dict[str, str]) -> None:
    res = run("agent_run", tmp_path, {**env, "FAKE_AGENT_EXIT": "2"}, {"prompt": "x", "agent": "claude"})
    assert res.outcome == "failed" and res.exit_code == 2 and "failed on purpose" in res.error
    res = run("agent_run", tmp_path, {**env, "FAKE_AGENT_SLEEP": "20"}, {"prompt": "x"}, timeout=0.5)
    assert res.outcome == "failed" and res.error == "timed out after 0.5s"


# ---------------------------------------------------------------- run_script


def test_run_script(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = run("run_script", tmp_path, env, {"script": "echo $FLEETQ_TASK_ID > id.txt; pwd", "cwd": str(proj)})
    assert res.outcome == "done" and res.exit_code == 0
    assert (proj / "id.txt").read_text() == "t1\n" and res.stdout_tail.strip() == str(proj.resolve())
    assert res.to_dict()["command"].startswith("echo")
    res = run("run_script", tmp_path, env, {"script": "echo oops >&2; exit 4"})
    assert res.outcome == "failed" and res.exit_code == 4 and res.error == "script exited with code 4: oops"


@pytest.mark.parametrize(
    "payload, message",
    [
        ({}, "payload.script is required"),
        ({"script": ["a", "b"]}, "payload.script must be text"),
        ({"script": "true", "cwd": "/no/such"}, "cwd does not exist: /no/such"),
    ],
)
def test_run_script_needs_human(tmp_path: Path, env: dict[str, str], payload: dict, message: str) -> None:
    res = run("run_script", tmp_path, env, payload)
    assert res.outcome == "needs_human" and res.error.startswith(message)


def test_run_script_timeout_from_payload_and_cancel(tmp_path: Path, env: dict[str, str]) -> None:
    t0 = time.monotonic()
    res = run("run_script", tmp_path, env, {"script": "sleep 30"}, timeout=0.3)
    assert res.outcome == "failed" and res.extra["timed_out"] and time.monotonic() - t0 < 3
    ctx = make_ctx(tmp_path, env, "run_script", {"script": "sleep 30"})
    threading.Timer(0.3, ctx.cancel.set).start()
    res = load_handler("run_script", None).run(ctx)
    assert res.outcome == "failed" and res.error == "cancelled"


# ---------------------------------------------------------------- git_pull


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        },
    )


def test_git_pull(tmp_path: Path, env: dict[str, str]) -> None:
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    (origin / "a.txt").write_text("1")
    git("add", ".", cwd=origin)
    git("commit", "-qm", "one", cwd=origin)
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    (origin / "b.txt").write_text("2")
    git("add", ".", cwd=origin)
    git("commit", "-qm", "two", cwd=origin)
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    res = run("git_pull", tmp_path, env, {"repo_path": str(clone), "branch": "main"})
    assert res.outcome == "done", res
    assert (clone / "b.txt").read_text() == "2"
    assert run("git_pull", tmp_path, env, {"repo_path": str(clone)}).outcome == "done"
    res = run("git_pull", tmp_path, env, {"repo_path": str(tmp_path / "logs")})
    assert res.outcome == "failed" and "not a git repository" in res.error
    assert run("git_pull", tmp_path, env, {}).error == "payload.repo_path is required"


# ---------------------------------------------------------------- npm_build


@pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")
def test_npm_build(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    (proj / "package.json").write_text(
        json.dumps(
            {
                "name": "p",
                "version": "1.0.0",
                "scripts": {"build": "node -e \"require('fs').writeFileSync('dist.txt', 'built')\"", "bad": "exit 3"},
            }
        )
    )
    env["npm_config_cache"] = str(tmp_path / "npm-cache")
    res = run("npm_build", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "done", res
    assert (proj / "dist.txt").read_text() == "built"
    res = run("npm_build", tmp_path, env, {"cwd": str(proj), "script": "bad"})
    assert res.outcome == "failed" and res.exit_code == 3


def test_npm_build_needs_human(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    assert run("npm_build", tmp_path, env, {}).error == "payload.cwd is required"
    assert "cannot tell how to run an npm build" in run("npm_build", tmp_path, env, {"cwd": str(proj)}).error
    (proj / "package.json").write_text("{}")
    res = run("npm_build", tmp_path, {**env, "PATH": path_without("npm")}, {"cwd": str(proj)})
    assert res.outcome == "needs_human" and res.error == "npm is not installed on this machine (not found on PATH)"


# ---------------------------------------------------------------- test_run


def python_project(proj: Path, ok: bool = True) -> Path:
    (proj / "tests").mkdir()
    (proj / "tests" / "test_x.py").write_text(f"def test_x():\n    assert {ok}\n")
    return proj


def test_test_run_pytest(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    python_project(proj)
    res = run("test_run", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "done", res
    assert "1 passed" in res.stdout_tail and res.extra["command"].split()[-1] == "pytest"
    (proj / "tests" / "test_y.py").write_text("def test_y():\n    assert False\n")
    res = run("test_run", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "failed" and res.exit_code == 1 and "pytest exited with code 1" in res.error


def test_test_run_command_and_runner(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = run("test_run", tmp_path, env, {"cwd": str(proj), "command": "echo custom; true"})
    assert res.outcome == "done" and res.stdout_tail == "custom\n"
    res = run("test_run", tmp_path, env, {"cwd": str(proj), "runner": "mocha"})
    assert res.outcome == "needs_human" and "payload.runner 'mocha' is not one of: pytest, jest" in res.error
    res = run("test_run", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "needs_human" and "cannot tell how to run the tests" in res.error


def test_test_run_picks_by_project_files(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    ctx = make_ctx(tmp_path, env, "test_run", {})
    recipes = load_handler("test_run", None).RECIPES

    def argv(payload: dict | None = None) -> list[str]:
        ctx.payload = payload or {}
        return pick_recipe(proj, ctx.payload, recipes, ("runner",), "test").argv(proj, ctx)

    (proj / "package.json").write_text(json.dumps({"devDependencies": {"jest": "^29"}}))
    assert argv() == ["npx", "--no-install", "jest"]
    (proj / "package.json").write_text(json.dumps({"scripts": {"test": "mocha"}}))
    assert argv() == ["npm", "test"]
    (proj / "package.json").unlink()
    (proj / "build.gradle.kts").write_text("")
    assert argv() == ["gradle", "test"]
    (proj / "gradlew").write_text("")
    assert argv() == ["sh", "./gradlew", "test"]
    (proj / "App.xcodeproj").mkdir()
    assert argv({"runner": "xcode", "scheme": "App", "destination": "platform=iOS Simulator,name=iPhone 15"}) == [
        "xcodebuild",
        "-project",
        "App.xcodeproj",
        "-scheme",
        "App",
        "-destination",
        "platform=iOS Simulator,name=iPhone 15",
        "test",
    ]
    with pytest.raises(Stop, match="payload.scheme is required"):
        argv({"runner": "xcode"})


def test_test_run_missing_tools(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    (proj / "build.gradle").write_text("")
    res = run("test_run", tmp_path, {**env, "PATH": path_without("gradle")}, {"cwd": str(proj)})
    assert res.outcome == "needs_human" and res.error.startswith("gradle is not installed")
    res = run(
        "test_run",
        tmp_path,
        {**env, "PATH": path_without("xcodebuild")},
        {"cwd": str(proj), "runner": "xcode", "scheme": "App"},
    )
    assert res.outcome == "needs_human" and res.error.startswith("xcodebuild is not installed")


# ---------------------------------------------------------------- lint


def test_lint_picks_ruff_and_runs_it_in_cwd(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    (proj / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    env["PATH"] = bin_dir(tmp_path, ruff='echo "ruff $* in $(pwd)"; exit 1') + os.pathsep + env["PATH"]
    res = run("lint", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "failed" and res.exit_code == 1
    assert res.stdout_tail.strip() == f"ruff check . in {proj.resolve()}"


def test_lint_command_and_choices(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    (proj / "ok.py").write_text("x = 1\n")
    res = run("lint", tmp_path, env, {"cwd": str(proj), "command": "python3 -m py_compile ok.py"})
    assert res.outcome == "done", res
    res = run("lint", tmp_path, {**env, "PATH": path_without("swiftlint")}, {"cwd": str(proj), "linter": "swiftlint"})
    assert res.outcome == "needs_human" and res.error.startswith("swiftlint is not installed")
    (proj / "package.json").write_text(json.dumps({"devDependencies": {"eslint": "^9"}}))
    ctx = make_ctx(tmp_path, env, "lint", {})
    recipe = pick_recipe(proj, {}, load_handler("lint", None).RECIPES, ("linter", "runner"), "lint")
    assert recipe.name == "eslint" and recipe.argv(proj, ctx) == ["npx", "--no-install", "eslint", "."]


# ---------------------------------------------------------------- ios_build / android_build


def test_ios_build(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    no_tools = {**env, "PATH": path_without("xcodebuild", "flutter")}
    (proj / "App.xcworkspace").mkdir()
    res = run("ios_build", tmp_path, no_tools, {"cwd": str(proj), "scheme": "App"})
    assert res.outcome == "needs_human" and res.error.startswith("xcodebuild is not installed")
    assert run("ios_build", tmp_path, env, {"cwd": str(proj)}).error == "payload.scheme is required"
    (proj / "pubspec.yaml").write_text("name: app\n")
    res = run("ios_build", tmp_path, no_tools, {"cwd": str(proj)})
    assert res.outcome == "needs_human" and res.error.startswith("flutter is not installed")
    env["PATH"] = bin_dir(tmp_path, flutter='echo "flutter $*"') + os.pathsep + env["PATH"]
    res = run("ios_build", tmp_path, env, {"cwd": str(proj), "codesign": False})
    assert res.outcome == "done" and res.stdout_tail == "flutter build ios --no-codesign\n"
    res = run("ios_build", tmp_path, env, {"cwd": str(proj), "command": "echo built > out.txt"})
    assert res.outcome == "done" and (proj / "out.txt").exists()


def test_android_build_with_the_gradle_wrapper(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    (proj / "settings.gradle").write_text("")
    (proj / "gradlew").write_text('echo "gradlew $*"; echo apk > app.apk\n')  # not executable: run through sh
    res = run("android_build", tmp_path, env, {"cwd": str(proj), "variant": "release"})
    assert res.outcome == "done", res
    assert res.stdout_tail == "gradlew assembleRelease\n" and (proj / "app.apk").exists()
    (proj / "gradlew").write_text("echo 'FAILURE: Build failed' >&2; exit 1\n")
    res = run("android_build", tmp_path, env, {"cwd": str(proj)})
    assert res.outcome == "failed" and res.error == "gradle exited with code 1: FAILURE: Build failed"
    (proj / "gradlew").unlink()
    res = run("android_build", tmp_path, {**env, "PATH": path_without("gradle")}, {"cwd": str(proj)})
    assert res.outcome == "needs_human" and res.error.startswith("gradle is not installed")
    res = run("android_build", tmp_path, env, {"cwd": str(proj), "command": "echo ok"})
    assert res.outcome == "done"
