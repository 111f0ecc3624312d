"""Shared fixtures: every test gets its own HOME, git config and identity, and real git repos."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetq import initfleet
from fleetq.cli import main
from fleetq.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private HOME, empty global git config, fixed author: tests never touch the real ones."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n")
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
    from fakes.support import fake_env

    return fake_env(tmp_path, FAKE_AGENT_LOG=str(tmp_path / "calls.jsonl"))


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """An empty project directory for agents and handlers to work in."""
    d = tmp_path / "proj"
    d.mkdir()
    return d


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `fleetq ARGS...` in-process through the real entry point (exit-code mapping included)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@dataclass
class Fleets:
    """An embedded fleet (bare origin) and helpers to make more clones of it."""

    tmp: Path
    first: Fleet
    remote: str

    def clone(self, machine: str) -> Fleet:
        return initfleet.join(self.remote, self.tmp / f"clone-{machine}", machine)


@pytest.fixture
def fleets(tmp_path: Path) -> Fleets:
    fleet, remote = initfleet.init(tmp_path / "fleet", machine="alpha")
    return Fleets(tmp_path, fleet, remote)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_fleetq(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60,
               check: bool = False) -> subprocess.CompletedProcess[str]:
    """`fleetq` as a real subprocess (for races and workers)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "fleetq", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"fleetq {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
