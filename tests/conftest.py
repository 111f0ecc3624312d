"""Shared fixtures: every test gets its own HOME, git config and identity, and real git repos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleetq.cli.app import main
from support.fleets import CliResult, Fleets, make_fleets


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private HOME, empty global git config, fixed author: tests never touch the real ones."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text('[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n')
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Person",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test Person",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_TERMINAL_PROMPT": "0",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("FLEETQ_FLEET", "FLEETQ_MACHINE", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    return env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A child environment with the fake agent CLIs first on PATH, logging their calls."""
    from support.agents import fake_env

    return fake_env(tmp_path, FAKE_AGENT_LOG=str(tmp_path / "calls.jsonl"))


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """An empty project directory for agents and handlers to work in."""
    d = tmp_path / "proj"
    d.mkdir()
    return d


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `fleetq ARGS...` in-process through the real entry point (exit-code mapping included)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def fleets(tmp_path: Path) -> Fleets:
    return make_fleets(tmp_path)
