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


PLAIN_DRAIN = r"""
set -u
cd "$1"; batch="$2"; n=0; pushes=0
while true; do
  git fetch -q origin main && git reset -q --hard origin/main
  todo=$(ls pending 2>/dev/null | shuf -n "$batch" 2>/dev/null)
  [ -z "$todo" ] && break
  for f in $todo; do git mv -k "pending/$f" "done/$f"; true; done
  git commit -qm "done $todo" || continue
  pushes=$((pushes+1))
  if git push -q origin HEAD:main 2>/dev/null; then n=$((n+$(echo $todo | wc -w))); fi
done
echo "$n $pushes"
"""


def plain_git_drain(base: Path, workers: int, tasks: int, batch: int = 8) -> dict:
    """The floor for a drain: ``workers`` plain clones, each a shell loop that fetches, moves up to
    ``batch`` task files pending/ -> done/, commits and pushes, retrying on a reject (a bare remote
    on a local path, no hook). Tasks/s and pushes per task."""
    remote = base / f"plain-drain-{workers}.git"
    git(base, "init", "-q", "--bare", str(remote))
    seed = base / f"plain-drain-{workers}-seed"
    git(base, "clone", "-q", str(remote), str(seed))
    (seed / "pending").mkdir()
    (seed / "done").mkdir()
    (seed / "done" / ".keep").write_text("")
    for i in range(tasks):
        (seed / "pending" / f"t{i:05d}.yaml").write_text(f"id: t{i:05d}\ntype: run_script\n")
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    clones = []
    for i in range(workers):
        c = base / f"plain-drain-{workers}-{i}"
        git(base, "clone", "-q", str(remote), str(c))
        clones.append(c)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(["bash", "-c", PLAIN_DRAIN, "plain", str(c), str(batch)], stdout=subprocess.PIPE, text=True)
        for c in clones
    ]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    wall = time.perf_counter() - t0
    done = sum(int(o[0]) for o in outs)
    pushes = sum(int(o[1]) for o in outs)
    return {"tasks_per_s": done / wall, "pushes_per_task": pushes / max(1, done), "wall_s": wall, "done": done}
