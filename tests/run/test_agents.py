"""fleetq.run.agents.* and `fleetq run` / `fleetq test`, against the fake agent CLIs and a fake OpenAI server."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetq import yamlio
from fleetq.cli.app import main
from fleetq.cli.commands.agent import commands
from fleetq.errors import FleetqError
from fleetq.run.agents import runners
from fleetq.run.agents.argv import build_argv
from fleetq.run.agents.registry import BUILTIN_AGENTS, installed_agents, load_agents
from fleetq.run.agents.replies import parse_output
from fleetq.run.agents.runners import run_agent
from support.fleets import ROOT, CliResult

pytestmark = pytest.mark.timeout(30)


def calls(tmp_path: Path) -> list[dict]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def go(name, prompt, env, cwd, tmp_path, **kw):
    kw.setdefault("agents", load_agents(None))
    kw.setdefault("model", None)
    kw.setdefault("timeout", 20)
    return run_agent(name, prompt, cwd=cwd, env=env, log_path=tmp_path / "run.log", **kw)


# ---------------------------------------------------------------- registry


def write_agents(fleet: Path, text: str) -> Path:
    (fleet / "config").mkdir(parents=True, exist_ok=True)
    (fleet / "config" / "agents.yaml").write_text(text)
    return fleet


def test_a_new_fleet_pins_no_builtin_and_the_readme_shows_them() -> None:
    """The skeleton agents.yaml overrides nothing (fixes to the built-ins reach a fleet with fleetq);
    the README's agent table shows each built-in's real flags."""
    assert yamlio.read_file(ROOT / "config" / "agents.yaml") == {"agents": {}}
    assert load_agents(ROOT) == load_agents(None)
    readme = (ROOT / "README.md").read_text()
    for name, spec in BUILTIN_AGENTS.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        for arg in spec.get("argv") or []:
            assert "{" in arg or arg in row, (name, arg)


def test_user_entries_override_add_and_remove(tmp_path: Path) -> None:
    fleet = write_agents(
        tmp_path,
        """
agents:
  claude: {default_model: claude-opus-4-5}
  gemini: null
  echo:
    argv: [echo, "{prompt}"]
""",
    )
    agents = load_agents(fleet)
    assert agents["claude"]["default_model"] == "claude-opus-4-5"
    assert agents["claude"]["argv"] == BUILTIN_AGENTS["claude"]["argv"]
    assert "gemini" not in agents
    assert agents["echo"] == {"argv": ["echo", "{prompt}"], "kind": "cli", "output": "text"}
    assert load_agents(tmp_path / "no-such-fleet") == load_agents(None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a list", "top-level 'agents:' mapping"),
        ("agents: {x: {argv: echo}}", "argv must be a list of strings"),
        ("agents: {x: {argv: [echo], output: xml}}", "output must be one of"),
        ("agents: {x: {kind: ftp}}", "kind must be one of"),
        ("agents: {x: {kind: cli}}", "argv is required"),
        ("agents: {x: {kind: http, base_url: 'http://h'}}", "default_model is required"),
        ("agents: {x: {argv: [a], usage_limit_patterns: ['(']}}", "not a valid regex"),
        ("agents: {'../x': {argv: [a]}}", "not a safe name"),
        ("agents: {x: 3}", "must be a mapping"),
    ],
)
def test_invalid_registry_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FleetqError, match=message):
        load_agents(write_agents(tmp_path, text))


def test_build_argv_templates() -> None:
    claude = BUILTIN_AGENTS["claude"]
    assert build_argv(claude, "-hi", model=None, output_file=None, cwd=Path("/w")) == [
        "claude",
        "-p",
        "--dangerously-skip-permissions",
        "--output-format",
        "json",
        "--",
        "-hi",
    ]  # after "--": a prompt starting with '-' is never an option
    assert build_argv(claude, "hi", model="opus", output_file=None, cwd=Path("/w"))[-4:] == [
        "--model",
        "opus",
        "--",
        "hi",
    ]
    gemini = build_argv(BUILTIN_AGENTS["gemini"], "--help", model=None, output_file=None, cwd=Path("/w"))
    assert gemini[-1] == "--prompt=--help" and "--skip-trust" in gemini
    codex = build_argv(BUILTIN_AGENTS["codex"], "-x {model}", model="o3", output_file=Path("/t/o"), cwd=Path("/w"))
    assert codex == [
        "codex",
        "exec",
        "--json",
        "--sandbox",
        "workspace-write",
        "--skip-git-repo-check",
        "-c",
        "features.unbounded_connection_retries=false",
        "--output-last-message",
        "/t/o",
        "-m",
        "o3",
        "--",
        "-x {model}",
    ]  # braces in a prompt stay
    inline = {"argv": ["tool", "--model", "{model}", "--in", "{cwd}", "{prompt}"]}
    assert build_argv(inline, "p", model=None, output_file=None, cwd=Path("/w")) == ["tool", "--in", "/w", "p"]
    assert build_argv(inline, "p", model="m", output_file=None, cwd=Path("/w"))[:3] == ["tool", "--model", "m"]


def test_installed_agents(tmp_path: Path, env: dict[str, str]) -> None:
    agents = load_agents(None)
    assert installed_agents(agents, env) == ["claude", "gemini", "codex"]
    assert installed_agents(agents, {**env, "GROQ_API_KEY": "k"})[-1] == "groq"
    assert installed_agents(agents, {**env, "PATH": str(tmp_path)}) == []
    custom = {
        "yes": {"kind": "cli", "argv": ["x"], "check": ["true"]},
        "no": {"kind": "cli", "argv": ["sh"], "check": ["false"]},
    }
    assert installed_agents(custom, env) == ["yes"]


# ---------------------------------------------------------------- the CLI agents


def test_claude(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = go("claude", "say pong", env, proj, tmp_path, model="claude-opus-4-5")
    assert res.outcome == "done" and res.exit_code == 0, res
    x = res.extra
    assert (x["reply"], x["cost_usd"], x["input_tokens"], x["output_tokens"]) == ("pong", 0.0123, 11, 7)
    assert x["model"] == "claude-opus-4-5" and x["session_id"] and x["agent"] == "claude"
    [call] = calls(tmp_path)
    assert call["argv"] == [
        "-p",
        "--dangerously-skip-permissions",
        "--output-format",
        "json",
        "--model",
        "claude-opus-4-5",
        "--",
        "say pong",
    ]
    assert Path(call["cwd"]) == proj.resolve()
    assert "pong" in (tmp_path / "run.log").read_text()


def test_gemini(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = go("gemini", "summarise", env, proj, tmp_path, model="gemini-2.5-flash")
    assert res.outcome == "done", res
    assert res.extra["reply"] == "gemini did: summarise"
    assert (res.extra["input_tokens"], res.extra["output_tokens"], res.extra["model"]) == (21, 5, "gemini-2.5-flash")
    assert calls(tmp_path)[0]["argv"] == [
        "--skip-trust",
        "--yolo",
        "--output-format",
        "json",
        "--prompt=summarise",
        "-m",
        "gemini-2.5-flash",
    ]


def test_codex_reads_its_events(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = go("codex", "-refactor {this}", env, proj, tmp_path)
    assert res.outcome == "done", res
    x = res.extra
    assert x["reply"] == "codex did: -refactor {this}" and x["session_id"]
    assert (x["input_tokens"], x["cache_read_tokens"], x["output_tokens"], x["reasoning_tokens"]) == (1234, 1000, 56, 7)
    argv = calls(tmp_path)[0]["argv"]
    assert argv[:2] == ["exec", "--json"] and "--skip-git-repo-check" in argv
    assert argv[-2:] == ["--", "-refactor {this}"]
    assert not Path(argv[argv.index("--output-last-message") + 1]).exists()  # temp file cleaned up


def test_agent_edits_files_in_cwd_with_tilde(tmp_path: Path, env: dict[str, str]) -> None:
    (Path(env["HOME"]) / "app").mkdir()
    env["FAKE_AGENT_WRITE"] = "src/new.py=print('hi')\n"
    res = go("claude", "add a file", env, "~/app", tmp_path)
    assert res.outcome == "done"
    assert (Path(env["HOME"]) / "app" / "src" / "new.py").read_text() == "print('hi')\n"


def test_no_cwd_runs_in_home(tmp_path: Path, env: dict[str, str]) -> None:
    assert go("gemini", "x", env, None, tmp_path).outcome == "done"
    assert calls(tmp_path)[0]["cwd"] == env["HOME"]


def test_nonzero_exit_is_failed_with_tails(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    env["FAKE_AGENT_EXIT"] = "3"
    res = go("codex", "x", env, proj, tmp_path)
    assert res.outcome == "failed" and res.exit_code == 3
    assert "fake codex failed on purpose" in res.error and "fake codex failed" in res.stdout_tail
    assert not res.extra.get("usage_limit")


@pytest.mark.parametrize("agent", ["claude", "gemini", "codex"])
def test_usage_limit_is_flagged(tmp_path: Path, env: dict[str, str], proj: Path, agent: str) -> None:
    env["FAKE_AGENT_LIMIT"] = "1"
    res = go(agent, "x", env, proj, tmp_path)
    assert res.outcome == "failed" and res.extra["usage_limit"] is True
    assert res.error.startswith("usage limit reached")


def test_claude_is_error_with_exit_zero_is_failed(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    doc = {"type": "result", "subtype": "error_max_turns", "is_error": True, "result": "gave up", "session_id": "s"}
    agents = {
        "c": {
            "kind": "cli",
            "argv": [sys.executable, "-c", f"print({json.dumps(json.dumps(doc))})"],
            "output": "claude-json",
        }
    }
    res = go("c", "x", env, proj, tmp_path, agents=agents)
    assert res.outcome == "failed" and res.exit_code == 0 and "gave up" in res.error


def test_custom_text_agent_with_stdin_and_env(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    agents = {
        "cat": {
            "kind": "cli",
            "argv": ["sh", "-c", 'cat; echo " $GREETING"'],
            "stdin": "{prompt}",
            "env": {"GREETING": "hello"},
            "output": "text",
        }
    }
    res = go("cat", "a long prompt", env, proj, tmp_path, agents=agents)
    assert res.outcome == "done" and res.extra["reply"] == "a long prompt hello"


def test_reply_is_bounded_for_the_task_file(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    env["FAKE_AGENT_REPLY"] = "y" * 100
    res = go("claude", "x", env, proj, tmp_path, reply_limit=10)
    assert res.extra["reply"] == "y" * 10 and res.extra["reply_truncated"] is True


@pytest.mark.parametrize(
    "name, cwd, message",
    [
        ("claude", "/no/such/dir", "cwd does not exist: /no/such/dir"),
        ("nosuch", None, "unknown agent 'nosuch'"),
        ("groq", None, "GROQ_API_KEY is not set"),
    ],
)
def test_needs_human(tmp_path: Path, env: dict[str, str], name: str, cwd, message: str) -> None:
    res = go(name, "x", env, cwd, tmp_path)
    assert res.outcome == "needs_human" and message in res.error


def test_not_installed_is_needs_human(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = go("claude", "x", {**env, "PATH": str(tmp_path)}, proj, tmp_path)
    assert res.outcome == "needs_human" and "not installed" in res.error and "'claude' not found" in res.error
    assert go(None, "x", {**env, "PATH": str(tmp_path)}, proj, tmp_path).error.startswith("no agent is installed")


def test_default_agent_is_the_first_installed(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    res = go(None, "x", env, proj, tmp_path)
    assert res.outcome == "done" and res.extra["agent"] == "claude"


def test_timeout_and_cancel(tmp_path: Path, env: dict[str, str], proj: Path) -> None:
    env["FAKE_AGENT_SLEEP"] = "30"
    t0 = time.monotonic()
    res = go("claude", "x", env, proj, tmp_path, timeout=0.5)
    assert res.outcome == "failed" and res.extra["timed_out"] and "timed out" in res.error
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    res = go("gemini", "x", env, proj, tmp_path, cancel=cancel)
    assert res.outcome == "failed" and res.error == "cancelled"
    assert time.monotonic() - t0 < 6


def test_parse_output_tolerates_noise() -> None:
    assert parse_output("claude-json", "not json").text == "not json"
    noisy = 'warning: something\n{"type": "result", "result": "ok", "is_error": false}\n'
    assert parse_output("claude-json", noisy).text == "ok"
    listed = json.dumps([{"type": "system"}, {"type": "result", "result": "fine", "total_cost_usd": 1}])
    assert parse_output("claude-json", listed).extra["cost_usd"] == 1
    gem = parse_output("gemini-json", json.dumps({"response": None, "error": {"message": "boom"}}))
    assert gem.error == "boom"
    assert parse_output("codex-last-message", "stdout reply\n", last_message=None).text == "stdout reply"


# ---------------------------------------------------------------- fleetq run / fleetq test


@pytest.fixture
def cli(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`fleetq ARGS` through the real entry point, main(): the exit code is what a shell would see."""
    monkeypatch.chdir(tmp_path)  # no fleet repo around the cwd

    def invoke(*args: str, **extra: str) -> CliResult:
        with monkeypatch.context() as m:
            for k, v in {**env, "FLEETQ_FLEET": "", **extra}.items():
                m.setenv(k, v)
            capsys.readouterr()
            code = main(list(args))
            cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return invoke


def test_cli_run(cli, tmp_path: Path, proj: Path) -> None:
    r = cli("run", "claude", "say", "pong", "--cwd", str(proj))
    assert r.code == 0 and r.out.strip() == "pong"
    r = cli("run", "gemini", "hello", "--json", "--model", "m1")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["agent"] == "gemini" and doc["reply"] == "gemini did: hello" and doc["model"] == "m1"
    r = cli("run", "codex", "x", FAKE_AGENT_EXIT="7")
    assert r.code == 7


def test_cli_test(cli) -> None:
    r = cli("test")
    assert r.code == 0, r.out
    rows = {line.split()[0]: line for line in r.out.splitlines()[2:]}
    assert all("pass" in rows[a] for a in ("claude", "gemini", "codex")) and "not installed" in rows["groq"]
    r = cli("test", "groq", "--json")
    assert r.code == 1 and json.loads(r.out)["agents"][0]["status"] == "not installed"
    r = cli("test", "claude", FAKE_AGENT_EXIT="1")
    assert r.code == 1 and "FAIL" in r.out
    assert cli("test", "nosuch").code != 0
    long = "x" * 300  # --json keeps the whole reply (the table shows a preview)
    r = cli("test", "claude", "--json", FAKE_AGENT_REPLY=long)
    assert json.loads(r.out)["agents"][0]["detail"] == f"unexpected reply: {long}"
    r = cli("test", "claude", "--json", FAKE_AGENT_LOGGED_OUT="1")  # `claude auth status` says not logged in
    doc = json.loads(r.out)["agents"][0]
    assert r.code == 1 and doc["status"] == "not installed" and "claude /login" in doc["detail"], doc


def test_module_exports() -> None:
    assert [c.name for c in commands] == ["run", "test"]
    assert runners.REPLY_LIMIT > 1000


def test_cli_run_uses_the_fleets_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fleetq.cli.app import main

    shout = 'agents:\n  shout:\n    argv: [sh, -c, "echo $0 | tr a-z A-Z", "{prompt}"]\n'
    fleet = write_agents(tmp_path / "fleet", shout)
    (fleet / ".git").mkdir()
    assert main(["--fleet", str(fleet), "run", "shout", "hello", "there"]) == 0
    assert capsys.readouterr().out == "HELLO THERE\n"  # a text agent's output is streamed, not printed twice
    assert main(["--fleet", str(tmp_path / "nope"), "run", "shout", "x"]) != 0


def test_fleetq_run_stops_an_agent_after_the_default_timeout(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that never ends (codex reconnecting forever) must not hold `fleetq run` forever."""
    from fleetq.cli.commands import agent as agent_cmd
    from fleetq.handlerapi import HandlerResult
    from fleetq.run.agents.registry import AGENT_TIMEOUT

    seen: list[float | None] = []

    def fake_run_agent(*args, timeout, **kw):
        seen.append(timeout)
        return HandlerResult("done", extra={"reply": "ok"})

    monkeypatch.setattr(agent_cmd, "run_agent", fake_run_agent)
    assert cli("run", "claude", "hi").code == 0
    assert cli("run", "claude", "hi", "--timeout", "5").code == 0
    assert cli("run", "claude", "hi", "--timeout", "0").code == 0
    assert seen == [AGENT_TIMEOUT, 5.0, None] and AGENT_TIMEOUT == 1800
