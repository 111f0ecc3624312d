"""fleetq benchmarks: one table, every figure next to its floor measured in the same run.

    python bench/run.py                 # everything (~5 min; the 100k-task repo is built once and cached)
    python bench/run.py --quick         # fewer samples, smaller drains
    python bench/run.py --only ssh      # one group: claim ssh race pickup drain big startup

Writes the table to bench/results/latest.md. Groups:
  claim    claim round trip vs plain fetch+commit+push, local-path (file) remote
  ssh      the same over ssh:// to a real sshd on loopback, with and without connection reuse
  race     racing claimers (1, 2, 4 clones; batches of 8) and their conflict rate
  pickup   assign -> running latency of an idle worker: local-path remote (watch) and ssh (poll)
  drain    tasks/s with 1, 2, 4, 8 workers, conflict rate, repo bytes per task, worker RSS
  big      100,000 done tasks in the history: queue/status wall time, claim vs an empty repo
  startup  `fleetq --help` vs bare python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, dir_bytes, git, isolate, median_ms, pct_ms, plain_git_drain, plain_git_round_trip  # noqa: E402

from fleetq import yamlio  # noqa: E402
from fleetq.core import transitions  # noqa: E402
from fleetq.core.clone import Fleet  # noqa: E402
from fleetq.core.config import MachineSpec  # noqa: E402
from fleetq.core.matching import Seat  # noqa: E402
from fleetq.core.states import DONE  # noqa: E402
from fleetq.core.task import fmt_time, now_utc  # noqa: E402
from fleetq.fleet import initfleet  # noqa: E402

HERE = Path(__file__).resolve().parent
GROUPS = ("claim", "ssh", "race", "pickup", "drain", "big", "startup")
SSH_POLL = 1.0  # the ssh worker's --poll: it cannot watch the remote's files, it asks ls-remote this often


@dataclass
class Row:
    measure: str
    value: str
    floor: str
    ratio: str = ""
    target: str = ""


def verdict(ok: bool, text: str) -> str:
    return f"{'✅' if ok else '❌'} {text}"


def make_tasks(n: int, prefix: str, script: str = "true") -> list[dict]:
    now = fmt_time(now_utc())
    return [
        {
            "id": f"{prefix}{i:05d}",
            "type": "run_script",
            "title": f"{prefix} {i}",
            "created_at": now,
            "payload": {"script": script},
        }
        for i in range(n)
    ]


def claim_times(fleet: Fleet, n: int, prefix: str) -> list[float]:
    """n claim round trips of one task each (fetch, plan, commit, push), in-process."""
    return interleaved_claims([fleet], n, prefix)[0]


def interleaved_claims(fleets: list[Fleet], n: int, prefix: str) -> list[list[float]]:
    """n claim round trips on each fleet, taken in turn so that a busy moment hits all of them alike."""
    for i, fleet in enumerate(fleets):
        transitions.create(fleet, make_tasks(n, f"{prefix}{i}-"))
    seats = [Seat(MachineSpec(f.machine, capabilities=["run_script"])) for f in fleets]
    times: list[list[float]] = [[] for _ in fleets]
    for _ in range(n):
        for fleet, seat, out in zip(fleets, seats, times):
            t0 = time.perf_counter()
            got = transitions.claim(fleet, seat, 1)
            out.append(time.perf_counter() - t0)
            assert len(got) == 1
    return times


def fetch_push_times(fleet: Fleet, n: int) -> list[float]:
    """A bare fetch plus a push that changes nothing: the two network legs alone."""
    sha = fleet.repo.rev("refs/remotes/origin/main")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fleet.repo.fetch()
        fleet.repo.push(sha)
        out.append(time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------- claim (file://, ssh://)


def bench_claim(base: Path, n: int) -> list[Row]:
    fleet, remote = initfleet.init(base / "claim-fleet", machine="bench")
    floor = median_ms(plain_git_round_trip(remote, base / "plain", n))
    claim = median_ms(claim_times(fleet, n, "c"))
    fp = median_ms(fetch_push_times(fleet, n))
    return [
        Row(
            "claim round trip (1 task), local-path remote, median",
            f"{claim:.1f} ms",
            f"plain fetch+commit+push {floor:.1f} ms",
            f"{claim / floor:.2f}×",
            verdict(claim <= 1.5 * floor, "≤ 1.5×"),
        ),
        Row("", "", f"bare fetch + no-op push {fp:.1f} ms", f"{claim / fp:.2f}×"),
    ]


def bench_ssh_claim(base: Path, n: int, ssh) -> list[Row]:  # noqa: ANN001 - sshbench.SshRemote
    from sshbench import env

    _, remote = initfleet.init(base / "ssh-seed", machine="seed")
    url = ssh.url(remote)
    fleet = initfleet.join(url, base / "ssh-claim", "sshbench")
    with env(GIT_SSH_COMMAND=ssh.plain_master_command()):
        plain_cm = median_ms(plain_git_round_trip(url, base / "ssh-plain-cm", n))
    plain = median_ms(plain_git_round_trip(url, base / "ssh-plain", n))
    reuse = median_ms(claim_times(fleet, n, "s"))
    with env(FLEETQ_SSH_REUSE="0"):
        fresh = median_ms(claim_times(fleet, n, "t"))
    return [
        Row(
            "claim round trip, ssh:// (loopback sshd), median",
            f"{reuse:.1f} ms",
            f"plain git over ssh with a ControlMaster {plain_cm:.1f} ms",
            f"{reuse / plain_cm:.2f}×",
            verdict(reuse <= 1.5 * plain_cm, "≤ 1.5×"),
        ),
        Row(
            "ssh:// claim without connection reuse (FLEETQ_SSH_REUSE=0)",
            f"{fresh:.1f} ms",
            f"plain git over ssh, no ControlMaster {plain:.1f} ms",
            f"{fresh / plain:.2f}×",
            verdict(fresh <= 1.5 * plain, "≤ 1.5×"),
        ),
    ]


# ---------------------------------------------------------------- racing claimers


def bench_race(base: Path, clones: int, backlog: int, batch: int) -> dict:
    fleet, remote = initfleet.init(base / f"race-{clones}-{batch}", machine="seed")
    transitions.create(fleet, make_tasks(backlog, "r"))
    paths = [initfleet.join(remote, base / f"race-{clones}-{batch}-c{i}", f"r{i}").root for i in range(clones)]
    start = time.time() + 1.0
    procs = []
    for i, p in enumerate(paths):
        out = base / f"race-{clones}-{batch}-{i}.json"
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(HERE / "claim_racer.py"), str(p), f"r{i}", str(batch), str(start), str(out)]
                ),
                out,
            )
        )
    results = []
    for proc, out in procs:
        proc.wait()
        results.append(json.loads(out.read_text()))
    total = sum(r["claimed"] for r in results)
    assert total == backlog, f"claimed {total} of {backlog}"
    wall = max(r["end"] for r in results) - start
    pushes = sum(r["pushes"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    return {"claims_per_s": total / wall, "conflict_rate": rejected / pushes if pushes else 0.0}


def race_rows(base: Path, q: bool) -> list[Row]:
    rows, single = [], None
    for clones in (1, 2, 4):
        r = bench_race(base, clones, 60 if q else 150, 1)
        single = single or r["claims_per_s"]
        rows.append(
            Row(
                f"racing claimers, {clones} clone(s), 1 task per claim",
                f"{r['claims_per_s']:.1f} claims/s",
                f"conflict rate {r['conflict_rate']:.0%}",
                f"{r['claims_per_s'] / single:.2f}× of 1 clone",
            )
        )
    r = bench_race(base, 4, 200 if q else 400, 8)
    rows.append(
        Row(
            "racing claimers, 4 clones, batches of 8",
            f"{r['claims_per_s']:.1f} claims/s",
            f"conflict rate {r['conflict_rate']:.0%}",
            f"{r['claims_per_s'] / single:.2f}× of 1 clone, batch 1",
        )
    )
    return rows


# ---------------------------------------------------------------- workers


def _worker(
    root: Path, machine: str, *args: str, log: Path, stats: Path | None = None, code: Path | None = None
) -> subprocess.Popen:
    """A `fleetq work` subprocess; ``code``: a checkout of another fleetq to run (the previous release)."""
    env = {**os.environ, **({"FLEETQ_STATS_FILE": str(stats)} if stats else {})}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return subprocess.Popen(
        [sys.executable, "-m", "fleetq", "--fleet", str(root), "--machine", machine, "work", "-q", *args],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def pickup(base: Path, name: str, remote: str, samples: int, poll: float | None) -> list[float]:
    """assign -> the task's first instruction running, on an idle worker; seconds per sample."""
    fleet = initfleet.join(remote, base / f"{name}-submitter", "submitter")
    w = initfleet.join(remote, base / f"{name}-worker", "idle")
    stamps = base / f"{name}-stamps"
    stamps.mkdir()
    proc = _worker(w.root, "idle", "--slots", "1", *(["--poll", str(poll)] if poll else []), log=base / f"{name}.log")
    time.sleep(2.0)
    lat = []
    try:
        for i in range(samples):
            mark = stamps / f"{i}"
            t0 = time.time()
            transitions.create(fleet, [{**make_tasks(1, f"p{i}-")[0], "payload": {"script": f"date +%s.%N > {mark}"}}])
            end = time.time() + 30
            while not (mark.exists() and mark.read_text().strip()) and time.time() < end:
                time.sleep(0.005)
            lat.append(float(mark.read_text()) - t0)
            time.sleep(0.3 + (i % 4) * 0.17)  # spread the next assign over the poll cycle
    finally:
        _stop(proc)
    return lat


def pickup_rows(base: Path, samples: int, ssh) -> list[Row]:  # noqa: ANN001
    rows = []
    _, remote = initfleet.init(base / "pickup-seed", machine="seed")
    lat = pickup(base, "pickup-local", remote, samples, None)
    p50, p90 = pct_ms(lat, 0.5), pct_ms(lat, 0.9)
    rows.append(
        Row(
            "pickup latency (assign → running), idle worker, local-path remote (watch)",
            f"p50 {p50:.0f} ms",
            f"p90 {p90:.0f} ms",
            "",
            verdict(p50 <= 500, "p50 ≤ 500 ms"),
        )
    )
    if ssh is not None:
        _, remote = initfleet.init(base / "pickup-ssh-seed", machine="seed")
        lat = pickup(base, "pickup-ssh", ssh.url(remote), samples, SSH_POLL)
        p50, p90 = pct_ms(lat, 0.5), pct_ms(lat, 0.9)
        rows.append(
            Row(
                f"pickup latency, idle worker, ssh:// remote (ls-remote poll every {SSH_POLL:g} s)",
                f"p50 {p50:.0f} ms",
                f"p90 {p90:.0f} ms; poll interval {SSH_POLL * 1000:.0f} ms",
                "",
                verdict(p50 <= SSH_POLL * 1000 + 300, f"p50 ≤ poll + 300 ms = {SSH_POLL * 1000 + 300:.0f} ms"),
            )
        )
    return rows


def beat_counters(remote: str, machine: str, timeout: float = 60) -> dict:
    """Wait for the worker's first heartbeat on the remote, a moment more for its first passes, and
    return the push counters its latest beat carries (empty from a fleetq that does not count)."""
    ref = f"refs/fleetq/machines/{machine}"
    end = time.time() + timeout
    while time.time() < end:
        shown = subprocess.run(["git", "--git-dir", remote, "show", f"{ref}:state.yaml"], capture_output=True)
        if shown.returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{machine} sent no heartbeat in {timeout:g}s")
    time.sleep(1.0)
    shown = subprocess.run(["git", "--git-dir", remote, "show", f"{ref}:state.yaml"], capture_output=True, check=True)
    state = yamlio.load_safe(shown.stdout, "state.yaml")
    counters = state.get("pushes") if isinstance(state, dict) else None
    return counters if isinstance(counters, dict) else {}


def done_on_remote(remote: str) -> int:
    """Task files under queue/done/ on the remote's main (one cheap git call, no checkout)."""
    out = subprocess.run(
        ["git", "--git-dir", remote, "ls-tree", "-r", "--name-only", "main", "queue/done/"],
        capture_output=True,
        text=True,
    ).stdout
    return out.count("\n")


def bench_drain(base: Path, workers: int, backlog: int, slots: int, code: Path | None = None, tag: str = "") -> dict:
    name = f"drain{tag}-{workers}"
    fleet, remote = initfleet.init(base / name, machine="submitter")
    clones = [initfleet.join(remote, base / f"{name}-w{i}", f"w{i}") for i in range(workers)]
    stats = [base / f"{name}-{i}.stats.json" for i in range(workers)]
    procs = [
        _worker(
            c.root,
            c.machine,
            "--slots",
            str(slots),
            "--poll",
            "0.2",
            log=base / f"{name}-{i}.log",
            stats=stats[i],
            code=code,
        )
        for i, c in enumerate(clones)
    ]
    # Looping workers, as a fleet runs them (a --burst worker takes no claims made for it), already up
    # (their start-up, ~0.5 s of CPU each, is not the fleet's throughput): the clock starts when the tasks
    # are queued, and the drain ends when the remote's main holds every task in done; then SIGTERM.
    warm = [beat_counters(remote, c.machine) for c in clones]
    t0 = time.time()
    transitions.create(fleet, make_tasks(backlog, "d"))
    deadline = time.time() + 600
    while done_on_remote(remote) < backlog and time.time() < deadline:
        time.sleep(0.1)
    wall = time.time() - t0
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)
    done = sum(1 for _ in fleet.snapshot().refs(DONE))
    assert done == backlog, f"{done} of {backlog} done"
    commits = int(git(fleet.root, "rev-list", "--count", "origin/main"))
    counts = [json.loads(s.read_text()) for s in stats]  # every worker writes its cas.STATS at exit
    # pushes of the drain: what each worker counted at exit less what its warm-up beat said it had made
    pushes = sum(c["pushes"] for c in counts) - sum(w.get("main_tried", 0) for w in warm)
    rejected = sum(c["rejected"] for c in counts) - sum(w.get("main_tried", 0) - w.get("main_landed", 0) for w in warm)
    own = sum(c.get("own_pushes", 0) for c in counts) - sum(w.get("own_tried", 0) for w in warm)
    return {
        "own_pushes": own,
        "tasks_per_s": backlog / wall,
        "wall_s": wall,
        "commits": commits,
        "remote": remote,
        "conflict": rejected / pushes if pushes else 0.0,
        "pushes": pushes,
    }


def repo_bytes(remote: str, tasks: int, base: Path) -> Row:
    """The remote's size per task as pushed (loose objects and small packs), and after `git gc`."""
    as_pushed = dir_bytes(Path(remote) / "objects")
    copy = base / "bytes-gc.git"
    shutil.copytree(remote, copy)
    git(copy, "gc", "-q")
    packed = dir_bytes(copy / "objects")
    return Row(
        f"repo bytes per task (remote after the {tasks}-task drain)",
        f"{as_pushed / tasks:.0f} B as pushed",
        f"{packed / tasks:.0f} B after git gc",
        f"{as_pushed / 1e6:.1f} MB → {packed / 1e6:.2f} MB",
    )


def worker_rss(base: Path, tasks: int) -> Row:
    """psutil RSS/USS of a `fleetq work` that has drained a batch (and of its zygote child)."""
    import psutil

    fleet, remote = initfleet.init(base / "rss-fleet", machine="submitter")
    w = initfleet.join(remote, base / "rss-worker", "rss")
    proc = _worker(w.root, "rss", "--slots", "8", "--poll", "0.2", log=base / "rss.log")
    try:
        transitions.create(fleet, make_tasks(tasks, "m"))
        end = time.time() + 300
        while sum(1 for _ in fleet.snapshot().refs(DONE)) < tasks and time.time() < end:
            time.sleep(0.5)
        time.sleep(1.0)
        p = psutil.Process(proc.pid)
        mem = p.memory_full_info()
        kids = [(c.name(), c.memory_full_info()) for c in p.children(recursive=True)]
    finally:
        _stop(proc)
    kid = "; ".join(f"child {n}: RSS {m.rss / 2**20:.1f} MB, USS {m.uss / 2**20:.1f} MB" for n, m in kids) or "no child"
    return Row(
        f"worker memory after draining {tasks} tasks (`fleetq work`, 8 slots)",
        f"RSS {mem.rss / 2**20:.1f} MB, USS {mem.uss / 2**20:.1f} MB",
        kid,
        "",
        verdict(mem.rss <= 80 * 2**20, "RSS ≤ 80 MB"),
    )


def previous_checkout(rev: str) -> Path:
    """A worktree of an earlier fleetq (``rev``) under bench/.cache, to run its workers in the same run."""
    path = HERE / ".cache" / f"previous-{rev}"
    if not (path / "fleetq").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        git(ROOT, "worktree", "prune")
        git(ROOT, "worktree", "add", "--detach", "-f", str(path), rev)
    return path


def idle_cost(base: Path, seconds: float) -> dict:
    """Pushes per minute of one idle `fleetq work` (default heartbeat), main and heartbeat refs."""
    fleet, remote = initfleet.init(base / "idle", machine="submitter")
    w = initfleet.join(remote, base / "idle-w", "idle")
    stats = base / "idle.stats.json"
    proc = _worker(w.root, "idle", log=base / "idle.log", stats=stats)
    time.sleep(seconds)
    _stop(proc)
    c = json.loads(stats.read_text())
    return {
        "main": c["pushes"],
        "own": c.get("own_pushes", 0),
        "per_min": (c["pushes"] + c.get("own_pushes", 0)) * 60 / seconds,
    }


def drain_rows(base: Path, q: bool, previous: str | None = None) -> list[Row]:
    rows, last = [], None
    backlog = 100 if q else 400
    code = previous_checkout(previous) if previous else None
    one = None
    for workers in (1, 2, 4, 8):
        d = bench_drain(base, workers, backlog, 8)
        last = d
        one = one or d["tasks_per_s"]
        per = (d["pushes"] + d["own_pushes"]) / backlog
        rows.append(
            Row(
                f"drain {backlog} no-op tasks, {workers} worker(s) × 8 slots",
                f"{d['tasks_per_s']:.1f} tasks/s",
                f"{d['commits']} commits in {d['wall_s']:.1f} s; {d['pushes']} main pushes "
                f"({d['conflict']:.0%} lost) + {d['own_pushes']} heartbeat-ref pushes",
                f"{d['pushes'] / backlog:.2f} main pushes/task ({per:.2f} with own refs); "
                f"{d['tasks_per_s'] / one:.2f}× of 1 worker",
                verdict(d["tasks_per_s"] >= one and d["pushes"] / backlog < 0.3, "≥ 1 worker, < 0.3 pushes/task")
                if workers >= 4
                else "",
            )
        )
        f = plain_git_drain(base, workers, backlog)
        rows.append(
            Row(
                f"  plain-git floor, {workers} clone(s) (shell loop: fetch, move ≤ 8 files, commit, push)",
                f"{f['tasks_per_s']:.1f} tasks/s",
                f"{f['pushes_per_task']:.2f} pushes/task (bare remote, no hook)",
                f"fleetq {d['tasks_per_s'] / f['tasks_per_s']:.2f}× of it",
            )
        )
        if code is not None:
            p = bench_drain(base, workers, backlog, 8, code=code, tag="-prev")
            rows.append(
                Row(
                    f"  previous release {previous}, {workers} worker(s)",
                    f"{p['tasks_per_s']:.1f} tasks/s",
                    f"{p['pushes']} main pushes ({p['conflict']:.0%} lost), {p['commits']} commits",
                    f"{p['pushes'] / backlog:.2f} main pushes/task; "
                    f"fleetq {d['tasks_per_s'] / p['tasks_per_s']:.2f}× of it",
                )
            )
    ic = idle_cost(base, 10 if q else 25)
    rows.append(
        Row(
            "idle cost: one idle `fleetq work`, default heartbeat",
            f"{ic['per_min']:.1f} pushes/min",
            f"{ic['main']} main + {ic['own']} heartbeat-ref pushes in {10 if q else 25} s",
        )
    )
    assert last is not None
    rows.append(repo_bytes(last["remote"], backlog, base))
    rows.append(worker_rss(base, 100 if q else 200))
    return rows


# ---------------------------------------------------------------- 100,000 done tasks


def wall_runs(argv: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        out.append(time.perf_counter() - t0)
    return out


def big_rows(base: Path, q: bool) -> list[Row]:
    import bigrepo

    from fleetq.core.archive import archive_plan
    from fleetq.core.archive import cutoff as archive_cutoff

    n_tasks = 100_000
    t0 = time.time()
    cached, info = bigrepo.build(base, n_tasks)
    build_s = time.time() - t0
    remote = bigrepo.copy_of(cached, base / "big-remote.git")
    t0 = time.time()
    big = initfleet.join(remote, base / "big-clone", "big")
    join_s = time.time() - t0
    cli = [sys.executable, "-m", "fleetq", "--fleet", str(big.root)]
    runs = 5 if q else 10
    empty, _ = initfleet.init(base / "big-empty", machine="big")  # the floor: the same on an empty fleet
    ecli = [sys.executable, "-m", "fleetq", "--fleet", str(empty.root)]
    rows = []

    rp, ep = (median_ms(wall_runs(c + ["queue", "--status", "pending"], runs)) for c in (cli, ecli))
    rows.append(
        Row(
            f"`fleetq queue --status pending`, {n_tasks:,} done tasks in the tree (wall, incl. fetch)",
            f"{rp:.0f} ms",
            f"empty fleet {ep:.0f} ms",
            f"{rp / ep:.2f}×",
            verdict(rp <= 500, "≤ 500 ms"),
        )
    )
    if not q:  # the first status parses every done task once (minutes under load): full runs only
        cold = wall_runs(cli + ["status"], 1)[0]
        warm, e_status = (median_ms(wall_runs(c + ["status"], runs)) for c in (cli, ecli))
        rows.append(
            Row(
                f"`fleetq status`, {n_tasks:,} done tasks (warm: shard totals cached in the clone)",
                f"{warm:.0f} ms",
                f"empty fleet {e_status:.0f} ms",
                f"{warm / e_status:.2f}×",
            )
        )
        rows.append(
            Row(
                "`fleetq status`, first run in a fresh clone (parses every done task once)",
                f"{cold:.1f} s",
                f"`fleetq queue` (all states, newest 50) {median_ms(wall_runs(cli + ['queue'], 3)):.0f} ms",
            )
        )

    n = 15 if q else 30
    claim_empty, claim_big = (median_ms(t) for t in interleaved_claims([empty, big], n, "b"))
    rows.append(
        Row(
            f"claim round trip, {n_tasks:,} done tasks in the tree, median",
            f"{claim_big:.1f} ms",
            f"empty repo {claim_empty:.1f} ms",
            f"{claim_big / claim_empty:.2f}×",
            verdict(claim_big <= 1.3 * claim_empty, "≤ 1.3×"),
        )
    )
    # Default settings, no hand archiving: every done day is older than keep_done_days (14), so an
    # ordinary worker pass (`fleetq work --once`, another machine of the fleet) archives them all.
    before = big.snapshot()
    days_before = len(before.done_days())
    t0 = time.perf_counter()
    archive_plan(before, archive_cutoff(14, now_utc()))  # the pass's archive step alone (read-only)
    plan_s = time.perf_counter() - t0
    t0 = time.time()  # the whole `--once` run: start, the pass, its second pass a poll later, the checkout
    work = ["--machine", "big-worker", "work", "--once", "--slots", "1", "--poll", "0.5"]
    subprocess.run(cli + work, capture_output=True, check=True)
    archive_s = time.time() - t0
    left = big.snapshot().done_days()
    assert not left, f"the worker pass left {len(left)} of {days_before} done days in the tree"
    claim_empty2, claim_arch = (median_ms(t) for t in interleaved_claims([empty, big], n, "a"))
    rows.append(
        Row(
            f"claim round trip, {n_tasks:,} done tasks in the history, default settings (auto-archive)",
            f"{claim_arch:.1f} ms",
            f"empty repo {claim_empty2:.1f} ms",
            f"{claim_arch / claim_empty2:.2f}×",
            verdict(claim_arch <= 1.3 * claim_empty2, "≤ 1.3×"),
        )
    )
    size = dir_bytes(Path(cached) / "objects")
    rows.append(
        Row(
            f"repo bytes per task, {n_tasks:,}-task history (3 commits per batch of 1000, gc'd)",
            f"{size / n_tasks:.0f} B",
            f"{size / 1e6:.1f} MB packed; join (clone) {join_s:.1f} s; "
            f"auto-archive of {days_before} days: plan {plan_s:.2f} s, "
            f"`fleetq work --once` {archive_s:.1f} s (incl. its checkout dropping the files)",
            f"build {build_s:.1f} s ({info['built']})",
        )
    )
    return rows


# ---------------------------------------------------------------- start-up


def startup_rows(n: int) -> list[Row]:
    help_ = median_ms(wall_runs([sys.executable, "-m", "fleetq", "--help"], n))
    bare = median_ms(wall_runs([sys.executable, "-c", "pass"], n))
    click_ = median_ms(wall_runs([sys.executable, "-c", "import click"], n))
    return [
        Row(
            f"`fleetq --help` start-up, median of {n}",
            f"{help_:.0f} ms",
            f"bare python {bare:.0f} ms; python + import click {click_:.0f} ms",
            f"{help_ / bare:.1f}× bare",
            verdict(help_ <= 250, "≤ 250 ms"),
        )
    ]


# ---------------------------------------------------------------- the table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="Fewer samples, smaller drains.")
    ap.add_argument("--only", choices=GROUPS, action="append", help="Run these groups only (repeatable).")
    ap.add_argument(
        "--previous", default="6e2c4a6", help="The earlier fleetq the drain rows run next to ('' for none)."
    )
    args = ap.parse_args()
    want: Callable[[str], bool] = lambda g: not args.only or g in args.only  # noqa: E731
    q = args.quick
    base = isolate()
    rows: list[Row] = []
    ssh = None
    try:
        if want("ssh") or want("pickup"):
            from sshbench import SshRemote

            ssh = SshRemote(base)
        if want("claim"):
            rows += bench_claim(base, 15 if q else 40)
        if want("ssh"):
            rows += bench_ssh_claim(base, 8 if q else 20, ssh)
        if want("race"):
            rows += race_rows(base, q)
        if want("pickup"):
            rows += pickup_rows(base, 8 if q else 20, ssh)
        if want("drain"):
            rows += drain_rows(base, q, args.previous or None)
        if want("big"):
            rows += big_rows(base, q)
        if want("startup"):
            rows += startup_rows(10 if q else 20)
    finally:
        if ssh is not None:
            ssh.stop()

    lines = ["| measure | fleetq | floor / context (same run) | ratio | target |", "|---|---|---|---|---|"]
    lines += [f"| {r.measure} | {r.value} | {r.floor} | {r.ratio} | {r.target} |" for r in rows]
    load = os.getloadavg()[0]
    meta = (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.python_implementation()} {platform.python_version()}, "
        f"git {git(ROOT, '--version').split()[-1]}, {os.cpu_count()} cores, load average {load:.1f} at the end"
        f"{', --quick' if q else ''}{', only ' + ' '.join(args.only) if args.only else ''}"
    )
    text = "\n".join(lines) + f"\n\n({meta})\n"
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(text)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
