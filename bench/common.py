"""Shared set-up for the benchmarks: an isolated environment and an embedded fleet in a temp dir."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def isolate() -> Path:
    """Private HOME, git config and identity for this process and its children."""
    base = Path(tempfile.mkdtemp(prefix="fleetq-bench-"))
    home = base / "home"
    home.mkdir()
    (base / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "GIT_CONFIG_GLOBAL": str(base / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }
    )
    os.environ.pop("FLEETQ_FLEET", None)
    os.environ.pop("FLEETQ_MACHINE", None)
    os.chdir(base)
    return base


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def plain_git_round_trip(remote: str, work: Path, n: int) -> list[float]:
    """The floor: fetch + commit + push of one small file, n times, in a plain clone of the same remote."""
    git(work.parent, "clone", "-q", remote, str(work))
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        git(work, "fetch", "-q", "origin", "main")
        git(work, "reset", "-q", "--hard", "origin/main")
        (work / "floor.txt").write_text(f"{i}\n")
        git(work, "add", "floor.txt")
        git(work, "commit", "-qm", f"floor {i}")
        git(work, "push", "-q", "origin", "HEAD:main")
        times.append(time.perf_counter() - t0)
    return times


def dir_bytes(path: Path) -> int:
    """Bytes of the files below ``path`` (apparent sizes)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def pct_ms(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p * (len(s) - 1))))] * 1000


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
