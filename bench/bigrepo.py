"""A fleet remote with a long history: N done tasks (default 100,000), built fast and cached.

Each batch of tasks goes through the real life of a task as three commits, like a
worker's passes would make them: added to pending, claimed, reported done into its
day shard (one shard per batch; the newest more than 14 days old, so that a worker's
pass with the default ``keep_done_days`` archives them all). The task files are the
bytes fleetq itself writes (a real task created, claimed and completed once, with its
id swapped per copy), and
the commits are streamed through ``git fast-import`` (seconds, not the hours of real
pushes). The remote is then maintained the way a fleet owner would
(``fleetq maintenance``: gc and a commit-graph with changed-path filters).

Cached under bench/.cache/bigrepo-v<VERSION>-<N>/remote.git (git-ignored); every
benchmark run works on a copy, so the cache never moves.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path

from fleetq.core import transitions
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, PENDING
from fleetq.core.task import fmt_time, now_utc
from fleetq.fleet import initfleet
from fleetq.git.inspect import maintenance

VERSION = 2  # bump when the layout or the template changes (2: every done day older than keep_done_days)
CACHE = Path(__file__).resolve().parent / ".cache"
OLDEST_KEPT = 14  # days: the newest shard is older than this (config.DEFAULT_SETTINGS["keep_done_days"])
TEMPLATE_ID = "tplxq0000000"  # swapped for each copy's id; appears nowhere else in a task file


def _templates(base: Path) -> tuple[dict[str, bytes], str]:
    """A real task's file in pending, claimed and done (fleetq's own bytes) and the fleet's remote."""
    fleet, remote = initfleet.init(base / "tpl", machine="history")
    transitions.create(
        fleet,
        [
            {
                "id": TEMPLATE_ID,
                "type": "run_script",
                "title": f"history task {TEMPLATE_ID}",
                "created_at": fmt_time(now_utc()),
                "payload": {"script": "make test"},
            }
        ],
    )
    out: dict[str, bytes] = {}

    def grab(state: str) -> None:
        snap = Snapshot(fleet.repo, fleet.repo.fetch())
        ref = snap.locate(TEMPLATE_ID)[0]
        assert ref.loc.state == state
        out[state] = fleet.repo.read_blob(ref.blob)

    grab(PENDING)
    got = transitions.claim(fleet, Seat(MachineSpec("history", capabilities=["run_script"])), 1)
    assert got
    grab(CLAIMED)
    transitions.complete(
        fleet,
        [
            transitions.Completion(
                TEMPLATE_ID,
                1,
                DONE,
                {"exit_code": 0, "duration": 12.3, "stdout_tail": "ok: 214 passed in 11.9s", "stderr_tail": ""},
            )
        ],
    )
    grab(DONE)
    # leave the remote as a fresh fleet: drop the template task's three commits
    head = fleet.repo.rev("refs/remotes/origin/main")
    first = subprocess.run(
        ["git", "rev-list", "--max-count=1", "--invert-grep", f"--grep={TEMPLATE_ID}", head],
        cwd=fleet.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/main", first], cwd=remote, check=True)
    return out, remote


def _stream(tpl: dict[str, bytes], parent: str, n: int, per_batch: int, start_day: dt.date):
    """fast-import commands: per batch, add -> claim -> done (one day shard per batch)."""
    t = int(time.mktime(start_day.timetuple()))
    first = True

    def commit(msg: str, ops: list[bytes]) -> bytes:
        nonlocal first, t
        t += 600
        m = msg.encode()
        head = [
            b"commit refs/heads/main",
            f"committer history <history@example.invalid> {t} +0000".encode(),
            f"data {len(m)}".encode(),
            m,
        ]
        if first:
            head.append(f"from {parent}".encode())
            first = False
        return b"\n".join(head + ops) + b"\n\n"

    def op(path: str, data: bytes) -> bytes:
        return f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data

    for b in range(0, n, per_batch):
        ids = [f"h{i:06d}" for i in range(b, min(n, b + per_batch))]
        day = (start_day + dt.timedelta(days=b // per_batch)).isoformat()
        bodies = {s: [tpl[s].replace(TEMPLATE_ID.encode(), i.encode()) for i in ids] for s in tpl}

        def trailers(src: str, dst: str, ids: list[str] = ids) -> str:
            return "".join(f"Fleetq-Task: {i}\nFleetq-Transition: {src}->{dst}\n" for i in ids)

        yield commit(
            f"fleetq: add {ids[0]} (+{len(ids) - 1})\n\nFleetq-Machine: history\n{trailers('new', PENDING)}",
            [op(f"queue/pending/{i}.yaml", d) for i, d in zip(ids, bodies[PENDING])],
        )
        yield commit(
            f"fleetq: history claims {ids[0]} (+{len(ids) - 1})\n\nFleetq-Machine: history\n"
            f"{trailers(PENDING, CLAIMED)}",
            [f"D queue/pending/{i}.yaml".encode() for i in ids]
            + [op(f"queue/claimed/{i}.yaml", d) for i, d in zip(ids, bodies[CLAIMED])],
        )
        yield commit(
            f"fleetq: history reports {ids[0]} (+{len(ids) - 1})\n\nFleetq-Machine: history\n{trailers(CLAIMED, DONE)}",
            [f"D queue/claimed/{i}.yaml".encode() for i in ids]
            + [op(f"queue/done/{day}/{i}.yaml", d) for i, d in zip(ids, bodies[DONE])],
        )


def build(work: Path, n: int = 100_000, per_batch: int = 1000) -> tuple[Path, dict]:
    """The cached remote (built on first use) and facts about it."""
    target = CACHE / f"bigrepo-v{VERSION}-{n}"
    remote = target / "remote.git"
    info = target / "built.txt"
    if not info.exists():
        shutil.rmtree(target, ignore_errors=True)
        t0 = time.time()
        tpl, fresh = _templates(work / "bigrepo-build")
        parent = subprocess.run(
            ["git", "rev-parse", "refs/heads/main"], cwd=fresh, capture_output=True, text=True, check=True
        ).stdout.strip()
        # every day shard older than the default keep_done_days (14): a worker's pass archives them all
        start = dt.date.today() - dt.timedelta(days=n // per_batch + OLDEST_KEPT + 1)
        proc = subprocess.Popen(["git", "fast-import", "--quiet", "--force"], cwd=fresh, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        for chunk in _stream(tpl, parent, n, per_batch, start):
            proc.stdin.write(chunk)
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("git fast-import failed")
        maintenance(Path(fresh))
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fresh, remote, symlinks=True)
        info.write_text(f"{n} done tasks, {per_batch} per day shard, built in {time.time() - t0:.0f} s\n")
    return remote, {"built": info.read_text().strip()}


def copy_of(remote: Path, dest: Path) -> str:
    """A private copy of the cached remote (benchmarks push to it)."""
    shutil.copytree(remote, dest, symlinks=True)
    return str(dest)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import isolate

    base = isolate()
    print(build(base, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
