"""Temp fleets on real git, and fleetq run in-process or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fleetq.core.clone import Fleet
from fleetq.fleet import initfleet
from fleetq.trust import hooks

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "support" / "fakes"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class Fleets:
    """An embedded fleet (bare origin) and helpers to make more clones of it."""

    tmp: Path
    first: Fleet
    remote: str

    def clone(self, machine: str) -> Fleet:
        return initfleet.join(self.remote, self.tmp / f"clone-{machine}", machine)


def make_fleets(tmp: Path) -> Fleets:
    fleet, remote = initfleet.init(tmp / "fleet", machine="alpha")
    return Fleets(tmp, fleet, remote)


def guarded_fleets(tmp: Path) -> Fleets:
    """A fleet whose bare origin runs fleetq's pre-receive hook (prepared before the very first push)."""
    bare = tmp / "remote.git"
    hooks.prepare_bare(bare)
    fleet, _ = initfleet.init(tmp / "fleet", str(bare), machine="alpha")
    return Fleets(tmp, fleet, str(bare))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_fleetq(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`fleetq` as a real subprocess (for races and workers)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "fleetq", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fleetq {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
