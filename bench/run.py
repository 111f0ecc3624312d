"""fleetq benchmarks, each figure next to its floor measured in the same run.

    python bench/run.py            # full run, prints a markdown table and writes bench/results/latest.md
    python bench/run.py --quick    # fewer samples

Figures: claim round trip vs a plain `git fetch`+commit+`git push` on the same
local remote; racing claimers (1, 2, 4 clones) claims/s and conflict rate;
pickup latency (assign -> running) of an idle `fleetq work`; drain throughput
of 400 no-op tasks with 1, 2, 4 workers of 8 slots; `fleetq --help` start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, isolate, median_ms, pct_ms, plain_git_round_trip  # noqa: E402

from fleetq import initfleet, transitions  # noqa: E402
from fleetq.config import MachineSpec  # noqa: E402
from fleetq.matching import Seat  # noqa: E402
from fleetq.task import fmt_time, now_utc  # noqa: E402

HERE = Path(__file__).resolve().parent


def make_tasks(n: int, prefix: str, script: str = "true") -> list[dict]:
    now = fmt_time(now_utc())
    return [{"id": f"{prefix}{i:05d}", "type": "run_script", "title": f"{prefix} {i}", "created_at": now,
             "payload": {"script": script}} for i in range(n)]


def bench_claim(base: Path, n: int) -> dict:
    fleet, remote = initfleet.init(base / "claim-fleet", machine="bench")
    floor = plain_git_round_trip(remote, base / "plain", n)
    transitions.create(fleet, make_tasks(n, "c"))
    seat = Seat(MachineSpec("bench", capabilities=["run_script"]))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = transitions.claim(fleet, seat, 1)
        times.append(time.perf_counter() - t0)
        assert len(got) == 1
    # a bare fetch + push on the same remote (the design's stated floor, no commit work at all)
    sha = fleet.repo.rev("refs/remotes/origin/main")
    fp = []
    for _ in range(n):
        t0 = time.perf_counter()
        fleet.repo.fetch()
        fleet.repo.push(sha)  # up to date: a full push round trip that changes nothing
        fp.append(time.perf_counter() - t0)
    return {"claim_ms": median_ms(times), "plain_ms": median_ms(floor), "fetch_push_ms": median_ms(fp)}


def bench_race(base: Path, clones: int, backlog: int, batch: int) -> dict:
    fleet, remote = initfleet.init(base / f"race-{clones}-{batch}", machine="seed")
    transitions.create(fleet, make_tasks(backlog, "r"))
    paths = [initfleet.join(remote, base / f"race-{clones}-{batch}-c{i}", f"r{i}").root for i in range(clones)]
    start = time.time() + 1.0
    procs = []
    for i, p in enumerate(paths):
        out = base / f"race-{clones}-{batch}-{i}.json"
        procs.append((subprocess.Popen([sys.executable, str(HERE / "claim_racer.py"), str(p), f"r{i}", str(batch),
                                        str(start), str(out)]), out))
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


def _worker(root: Path, machine: str, *args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fleetq", "--fleet", str(root), "--machine", machine, "work", "-q", *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def bench_pickup(base: Path, samples: int) -> dict:
    fleet, remote = initfleet.init(base / "pickup-fleet", machine="submitter")
    w = initfleet.join(remote, base / "pickup-worker", "idle")
    stamps = base / "stamps"
    stamps.mkdir()
    proc = _worker(w.root, "idle", "--slots", "1", log=base / "pickup.log")
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
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"pickup_p50_ms": pct_ms(lat, 0.5), "pickup_p90_ms": pct_ms(lat, 0.9)}


def bench_drain(base: Path, workers: int, backlog: int, slots: int) -> dict:
    fleet, remote = initfleet.init(base / f"drain-{workers}", machine="submitter")
    clones = [initfleet.join(remote, base / f"drain-{workers}-w{i}", f"w{i}") for i in range(workers)]
    transitions.create(fleet, make_tasks(backlog, "d"))
    t0 = time.time()
    procs = [_worker(c.root, c.machine, "--burst", "--slots", str(slots), "--poll", "0.2",
                     log=base / f"drain-{workers}-{i}.log") for i, c in enumerate(clones)]
    for p in procs:
        p.wait(600)
    wall = time.time() - t0
    snap = fleet.snapshot()
    done = len(snap.tasks(["done"]))
    assert done == backlog, f"{done} of {backlog} done"
    commits = int(subprocess.run(["git", "rev-list", "--count", "origin/main"], cwd=fleet.root, capture_output=True,
                                 text=True, check=True).stdout)
    return {"tasks_per_s": backlog / wall, "wall_s": wall, "commits": commits}


def bench_startup(n: int) -> dict:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fleetq", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    bare = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        bare.append(time.perf_counter() - t0)
    return {"help_ms": median_ms(times), "python_ms": median_ms(bare)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["claim", "race", "pickup", "drain", "startup"], help="Run one group.")
    args = ap.parse_args()
    want = (lambda g: args.only in (None, g))
    q = args.quick
    base = isolate()
    rows: list[tuple[str, str, str, str]] = []

    if want("claim"):
        c = bench_claim(base, 15 if q else 40)
        rows.append(("claim round trip (1 task), median", f"{c['claim_ms']:.1f} ms",
                     f"plain fetch+commit+push {c['plain_ms']:.1f} ms", f"{c['claim_ms'] / c['plain_ms']:.2f}×"))
        rows.append(("", "", f"bare fetch + no-op push {c['fetch_push_ms']:.1f} ms", f"{c['claim_ms'] / c['fetch_push_ms']:.2f}×"))

    if want("race"):
        single = None
        for clones in (1, 2, 4):
            r = bench_race(base, clones, 60 if q else 150, 1)
            single = single or r["claims_per_s"]
            rows.append((f"racing claimers, {clones} clone(s), 1 task per claim", f"{r['claims_per_s']:.1f} claims/s",
                         f"conflict rate {r['conflict_rate']:.0%}", f"{r['claims_per_s'] / single:.2f}× of 1 clone"))
        r = bench_race(base, 4, 200 if q else 400, 8)
        rows.append(("racing claimers, 4 clones, batches of 8", f"{r['claims_per_s']:.1f} claims/s",
                     f"conflict rate {r['conflict_rate']:.0%}", f"{r['claims_per_s'] / single:.2f}× of 1 clone, batch 1"))

    if want("pickup"):
        p = bench_pickup(base, 8 if q else 20)
        rows.append(("pickup latency (assign -> running), idle worker, local remote", f"p50 {p['pickup_p50_ms']:.0f} ms",
                     f"p90 {p['pickup_p90_ms']:.0f} ms", "old HTTP queue polled every 10 s"))

    if want("drain"):
        for workers in (1, 2, 4):
            d = bench_drain(base, workers, 100 if q else 400, 8)
            rows.append((f"drain {100 if q else 400} no-op tasks, {workers} worker(s) × 8 slots",
                         f"{d['tasks_per_s']:.1f} tasks/s", f"{d['commits']} commits in {d['wall_s']:.1f} s",
                         "target ≥ 50/s with 4 workers"))

    if want("startup"):
        s = bench_startup(5 if q else 15)
        rows.append(("`fleetq --help` start-up", f"{s['help_ms']:.0f} ms", f"bare python {s['python_ms']:.0f} ms",
                     f"{s['help_ms'] / s['python_ms']:.1f}×"))

    lines = ["| measure | fleetq | floor / context (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c_} | {d_} |" for a, b, c_, d_ in rows]
    meta = (f"{time.strftime('%Y-%m-%d')}, {platform.python_implementation()} {platform.python_version()}, "
            f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}, "
            f"{os.cpu_count()} cores{', --quick' if q else ''}")
    text = "\n".join(lines) + f"\n\n({meta})\n"
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(text)


if __name__ == "__main__":
    main()
