"""The chaos run: workers on separate hosts (tests/support/netbed.py) while hosts die and the network cuts out.

``run_chaos(bed, ...)`` is shared by the short test (tests/fleet/test_chaos.py) and the long command
(bench/chaos.py). Each task is a ``run_script`` that stamps ``start``/``end`` lines with
/proc/uptime (one clock for every namespace here) into its host's own file, so the driver can
check afterwards that no task ever ran on two hosts at once. The end state is read from the
remote (through the control clone), its git log and those files:

* every task is in done exactly once, nothing is left pending/claimed/failed, attempts recorded;
* no two runs of one task overlap in time (a run killed with its worker ends at the kill);
* results a cut-off host finished while offline reached the remote after the heal
  (as the result, or as a "late result" note when the task had been reaped and run again);
* ``fleetq fsck`` in the control clone is clean.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq.core import transitions
from fleetq.core.states import DONE
from fleetq.core.task import fmt_time, now_utc
from support.netbed import NetBed, uptime

SCRIPT = """L="$CHAOS_LOG"; I="$FLEETQ_TASK_ID $FLEETQ_MACHINE $FLEETQ_ATTEMPT"
trap 'read -r U _ < /proc/uptime; echo "end $I $U killed" >> "$L"; exit 143' TERM INT
read -r U _ < /proc/uptime; echo "start $I $U" >> "$L"
sleep {secs} & wait $!
read -r U _ < /proc/uptime; echo "end $I $U ok" >> "$L"
"""


@dataclass
class Interval:
    task: str
    host: str
    attempt: int
    start: float
    end: float | None
    how: str  # ok | killed | worker killed | open


@dataclass
class Report:
    workers: int
    tasks: int
    lease: float
    duration: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)  # attempts -> tasks
    kills: int = 0
    cuts: list[dict[str, Any]] = field(default_factory=list)
    sshd_down: float = 0.0
    reaped_tasks: int = 0
    fenced: int = 0
    handed_back: int = 0
    late_notes: int = 0
    offline_finished: int = 0
    offline_pushed: int = 0
    runs: int = 0
    overlaps: list[str] = field(default_factory=list)
    unterminated: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    fsck_clean: bool = False
    fsck_output: str = ""
    pushes: int = 0
    rejected: int = 0
    commits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        att = ", ".join(f"{k}: {v}" for k, v in sorted(self.attempts.items()))
        cuts = "; ".join(f"h{c['host']} for {c['seconds']:.1f}s (lease {self.lease:g}s)" for c in self.cuts) or "none"
        return [
            f"| workers | {self.workers} |",
            f"| tasks | {self.tasks} |",
            f"| wall time | {self.duration:.1f} s |",
            f"| final states | {json.dumps(self.states)} |",
            f"| attempts per task (attempts: tasks) | {att} |",
            f"| runs started (all hosts) | {self.runs} |",
            f"| workers SIGKILLed and restarted | {self.kills} |",
            f"| hosts cut off | {cuts} |",
            f"| remote sshd stopped | {self.sshd_down:.1f} s |",
            f"| claims reaped by other workers (orphaned) | {self.reaped_tasks} |",
            f"| runs fenced (killed on a lost lease) | {self.fenced} |",
            f"| handed back by their own worker | {self.handed_back} |",
            f"| late results kept as notes | {self.late_notes} |",
            "| finished while cut off / reached the remote after heal | "
            f"{self.offline_finished} / {self.offline_pushed} |",
            f"| commits on main | {self.commits} |",
            f"| pushes / rejected (CAS lost), from workers that exited cleanly | {self.pushes} / {self.rejected} |",
            f"| runs of one task overlapping in time | {len(self.overlaps)} |",
            f"| lost / duplicated tasks | {len(self.lost)} / {len(self.duplicated)} |",
            f"| fsck | {'clean' if self.fsck_clean else 'NOT clean'} |",
            f"| verdict | {'PASS' if self.ok else 'FAIL: ' + '; '.join(self.problems[:5])} |",
        ]


def make_tasks(
    n: int, rng: random.Random, short: tuple[float, float], long: tuple[float, float], long_share: float
) -> list[dict[str, Any]]:
    now = fmt_time(now_utc())
    out = []
    for i in range(n):
        lo, hi = long if rng.random() < long_share else short
        secs = round(rng.uniform(lo, hi), 2)
        out.append(
            {
                "id": f"c{i:04d}",
                "type": "run_script",
                "title": f"chaos {i} ({secs}s)",
                "created_at": now,
                "max_attempts": 20,
                "payload": {"script": SCRIPT.format(secs=secs)},
            }
        )
    return out


def run_chaos(
    bed: NetBed,
    *,
    tasks: int,
    lease: float = 10.0,
    heartbeat: float = 1.0,
    poll: float = 0.5,
    kills: int = 1,
    cut_extra: float = 4.0,
    sshd_down: float = 3.0,
    seed: int = 1,
    short: tuple[float, float] = (0.05, 0.6),
    long: tuple[float, float] = (1.0, 3.0),
    long_share: float = 0.3,
    timeout: float = 300.0,
    say: Any = print,
) -> Report:
    """Run the scenario on a created bed (h1..hN run workers) and check the invariants."""
    rng = random.Random(seed)
    workers = [h.index for h in bed.hosts]
    rep = Report(workers=len(workers), tasks=tasks, lease=lease)
    bed.worker_flags = ["--poll", str(poll), "--heartbeat", str(heartbeat), "--lease", str(lease)]
    for h in bed.hosts:
        h.env["FLEETQ_STATS_FILE"] = str(h.dir / "stats-{pid}.json")
    control = bed.control
    datas = make_tasks(tasks, rng, short, long, long_share)
    for i in range(0, tasks, 100):
        transitions.create(control, datas[i : i + 100])
    started = time.monotonic()
    for i in workers:
        bed.start_worker(i)
    say(f"chaos: {len(workers)} workers, {tasks} tasks, lease {lease:g}s; {bed.mode_note}")

    # The timeline: kills spread over the run, one cut (> lease), then the remote's sshd down for a while.
    victim = workers[-1]
    cut_for = lease + cut_extra
    others = [w for w in workers if w != victim] or workers
    expected = max(20.0, tasks * (sum(short) / 2 * (1 - long_share) + sum(long) / 2 * long_share) / (2 * len(workers)))
    events: list[tuple[float, str, int]] = [
        (1.5, "cut", victim),
        (1.5 + cut_for, "heal", victim),
        (3.5 + cut_for, "sshd-stop", 0),
    ]
    for k in range(kills):
        at = 1.0 + (k + 1) * max(expected, 6 + cut_for + sshd_down) / (kills + 1)
        events += [(at, "kill", rng.choice(others)), (at + rng.uniform(0.5, 2.0), "restart", 0)]
    events.sort()
    killed: list[int] = []
    cut_at = heal_at = 0.0
    while True:
        t = time.monotonic() - started
        if events and events[0][1] == "cut" and events[0][0] <= t and not _busy(bed, victim) and t < 30:
            time.sleep(0.2)  # cut the victim while it runs something, so it has results to bring back
            continue
        while events and events[0][0] <= t:
            _, what, i = events.pop(0)
            if what == "cut":
                shift = t - 1.5  # the rest of the timeline moves with the cut
                events = sorted((at + shift, w, j) for at, w, j in events)
                cut_at = uptime()
                bed.cut(i)
                say(f"  {t:6.1f}s cut h{i} off the network for {cut_for:.1f}s")
            elif what == "heal":
                bed.heal(i)
                heal_at = uptime()
                rep.cuts.append({"host": i, "seconds": heal_at - cut_at})
                say(f"  {t:6.1f}s healed h{i}")
            elif what == "sshd-stop":
                down_at = time.monotonic()
                bed.stop_sshd()
                events = sorted([*events, (t + sshd_down, "sshd-start", 0)])  # down for sshd_down from now
                say(f"  {t:6.1f}s stopped the remote's sshd for {sshd_down:.1f}s")
            elif what == "sshd-start":
                bed.start_sshd()
                rep.sshd_down = time.monotonic() - down_at
                say(f"  {t:6.1f}s started the remote's sshd")
            elif what == "kill":
                bed.kill_worker(i, signal.SIGKILL)
                killed.append(i)
                rep.kills += 1
                say(f"  {t:6.1f}s SIGKILLed the worker on h{i}")
            elif what == "restart":
                i = killed.pop(0)
                bed.start_worker(i)
                say(f"  {t:6.1f}s restarted the worker on h{i}")
        states = _states(bed)
        if not events and states.get(DONE, 0) == tasks and sum(states.values()) == tasks:
            break
        if t > timeout:
            rep.problems.append(f"timed out after {timeout:.0f}s with {states}")
            break
        time.sleep(1.0)
    # Let the healed host's journal drain (its stale results go in as notes), then stop everyone.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _journal_left(bed):
        time.sleep(0.5)
    rep.duration = time.monotonic() - started
    for i in workers:
        if bed.stop_worker(i) not in (0, None):
            rep.problems.append(f"worker h{i} exited with {bed.host(i).proc.returncode}")  # type: ignore[union-attr]
    check(bed, rep, cut_at, heal_at, victim)
    return rep


def _states(bed: NetBed) -> dict[str, int]:
    snap = bed.control.snapshot()
    return dict(Counter(r.loc.state for r in snap.all_refs()))


def _busy(bed: NetBed, i: int) -> bool:
    f = Path(bed.host(i).env["CHAOS_LOG"])
    if not f.exists():
        return False
    lines = f.read_text().split("\n")
    return sum(ln.startswith("start") for ln in lines) > sum(ln.startswith("end") for ln in lines)


def _journal_left(bed: NetBed) -> bool:
    return any(
        any((h.clone / ".fleetq" / "journal").glob("*.yaml"))
        for h in bed.hosts
        if (h.clone / ".fleetq" / "journal").is_dir()
    )


def read_runs(bed: NetBed) -> list[Interval]:
    """Every run from every host's file; a run with no end line ends when its worker was SIGKILLed."""
    out: list[Interval] = []
    for h in bed.hosts:
        f = Path(h.env["CHAOS_LOG"])
        if not f.exists():
            continue
        opened: dict[tuple[str, int], Interval] = {}
        for line in f.read_text().splitlines():
            parts = line.split()
            try:
                kind, tid, host, attempt, at = parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])
            except (IndexError, ValueError):
                raise AssertionError(f"{f}: a malformed line: {line!r}") from None
            if kind == "start":
                opened[(tid, attempt)] = iv = Interval(tid, host, attempt, at, None, "open")
                out.append(iv)
            elif kind == "end" and (tid, attempt) in opened:
                iv = opened.pop((tid, attempt))
                iv.end, iv.how = at, parts[5] if len(parts) > 5 else "ok"
        for iv in opened.values():
            later = [k for k in h.kills if k >= iv.start]
            if later:
                iv.end, iv.how = later[0], "worker killed"
    return out


def overlaps(runs: list[Interval]) -> list[str]:
    by_task: dict[str, list[Interval]] = {}
    for r in runs:
        by_task.setdefault(r.task, []).append(r)
    bad = []
    for tid, rs in by_task.items():
        rs.sort(key=lambda r: r.start)
        for a, b in zip(rs, rs[1:]):
            end = a.end if a.end is not None else float("inf")
            if b.start < end:
                bad.append(
                    f"{tid}: attempt {a.attempt} on {a.host} ({a.how}) still running when attempt "
                    f"{b.attempt} started on {b.host}"
                )
    return bad


def check(bed: NetBed, rep: Report, cut_at: float, heal_at: float, victim: int) -> None:
    control = bed.control
    snap = control.snapshot()
    refs = snap.all_refs()
    rep.states = dict(Counter(r.loc.state for r in refs))
    ids = Counter(r.id for r in refs)
    expected = {f"c{i:04d}" for i in range(rep.tasks)}
    rep.lost = sorted(expected - set(ids))
    rep.duplicated = sorted(t for t, n in ids.items() if n > 1)
    not_done = [r.id for r in refs if r.loc.state != DONE]
    tasks = {r.id: snap.load(r) for r in refs}
    rep.attempts = dict(Counter(t.attempts for t in tasks.values()))
    notes = {tid: json.dumps(t.data.get("notes") or []) for tid, t in tasks.items()}
    no_attempts = [tid for tid, t in tasks.items() if t.attempts < 1 or not (t.result or {}).get("attempt")]
    runs = read_runs(bed)
    rep.runs = len(runs)
    rep.overlaps = overlaps(runs)
    rep.unterminated = [f"{r.task} attempt {r.attempt} on {r.host}" for r in runs if r.end is None]
    # results the cut-off host finished while it was cut off: on the remote as the result or a late note
    vname = f"h{victim}"
    offline = [
        r for r in runs if r.host == vname and r.how == "ok" and r.end is not None and cut_at <= r.end <= heal_at
    ]
    rep.offline_finished = len(offline)
    for r in offline:
        t = tasks.get(r.task)
        res = (t.result or {}) if t else {}
        if (
            res.get("machine") == vname and res.get("attempt") == r.attempt
        ) or f"late result of attempt {r.attempt} on {vname}" in notes.get(r.task, ""):
            rep.offline_pushed += 1
    rep.late_notes = sum(n.count("late result") for n in notes.values())
    log = subprocess.run(
        ["git", "log", "--format=%s", "refs/remotes/origin/main"], cwd=control.root, capture_output=True, text=True
    ).stdout.splitlines()
    rep.commits = len(log)
    rep.reaped_tasks = sum(n.count("orphaned:") for n in notes.values())
    for h in bed.hosts:
        text = h.log_path.read_text() if h.log_path and h.log_path.exists() else ""
        rep.fenced += len(re.findall(r"WARNING fenced ", text))
        rep.handed_back += len(re.findall(r"handed \S+ back to pending", text))
        for f in h.dir.glob("stats-*.json"):
            try:
                st = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            rep.pushes += int(st.get("pushes", 0))
            rep.rejected += int(st.get("rejected", 0))
    fsck = subprocess.run(
        [sys.executable, "-m", "fleetq", "--fleet", str(control.root), "fsck", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rep.fsck_output = (fsck.stdout + fsck.stderr).strip()
    try:
        data = json.loads(fsck.stdout)
        rep.fsck_clean = fsck.returncode == 0 and not data.get("issues") and not data.get("remaining")
    except ValueError:
        rep.fsck_clean = False
    for cond, what in (
        (rep.lost, f"lost tasks: {rep.lost[:5]}"),
        (rep.duplicated, f"tasks in two places: {rep.duplicated[:5]}"),
        (not_done, f"not done: {not_done[:5]}"),
        (no_attempts, f"no attempt recorded: {no_attempts[:5]}"),
        (rep.overlaps, f"ran on two hosts at once: {rep.overlaps[:3]}"),
        (rep.unterminated, f"runs with no end: {rep.unterminated[:3]}"),
        (
            rep.offline_pushed < rep.offline_finished,
            f"{rep.offline_finished - rep.offline_pushed} results finished offline never reached the remote",
        ),
        (not rep.fsck_clean, f"fsck: {rep.fsck_output[:300]}"),
    ):
        if cond:
            rep.problems.append(what)
