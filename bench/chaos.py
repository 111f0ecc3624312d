"""The long chaos run: 8 worker hosts, 300 tasks of mixed length, random SIGKILLs and restarts, one
host cut off for longer than the lease, the remote's sshd stopped for a while (tests/support/chaos.py).

    sudo python bench/chaos.py [--workers 8] [--tasks 300] [--kills 6] [--lease 10] [--seed 1]

Prints a report and writes bench/results/chaos.md. Needs root for network namespaces; without,
the bed falls back to loopback sshd ports and says so in the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.chaos import run_chaos  # noqa: E402
from support.netbed import NetBed, isolate_process  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--kills", type=int, default=6, help="workers SIGKILLed (and restarted) during the run")
    ap.add_argument("--lease", type=float, default=10.0)
    ap.add_argument("--heartbeat", type=float, default=1.0)
    ap.add_argument("--sshd-down", type=float, default=8.0, help="seconds the remote's sshd stays stopped")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1500.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.md")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="fleetq-chaos-"))
    isolate_process(base)
    bed = NetBed(base / "bed")
    try:
        bed.create(args.workers + 1)
        rep = run_chaos(
            bed,
            tasks=args.tasks,
            lease=args.lease,
            heartbeat=args.heartbeat,
            kills=args.kills,
            cut_extra=max(4.0, args.lease / 2),
            sshd_down=args.sshd_down,
            seed=args.seed,
            short=(0.05, 0.6),
            long=(1.0, 3.0),
            long_share=0.3,
            timeout=args.timeout,
            say=lambda s: print(s, flush=True),
        )
    finally:
        bed.teardown()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Chaos run (bench/chaos.py)",
            "",
            f"{when}; {platform.system()} {platform.machine()}, Python {platform.python_version()}; {bed.mode_note}.",
            f"Tasks: run_script sleeping 0.05-0.6 s (70%) or 1-3 s (30%); lease {args.lease:g} s, heartbeat "
            f"{args.heartbeat:g} s, poll 0.5 s; remote reached over ssh:// with connection reuse; seed {args.seed}.",
            "",
            "| measure | value |",
            "|---|---|",
            *rep.lines(),
            "",
            "Checks: every task in done exactly once (nothing pending/claimed/failed, no id in two places), an attempt "
            "recorded on each; no two runs of a task overlapping in time (start/end stamps each run wrote on its host; "
            "a run without an end line ends when its worker was SIGKILLed); results the cut-off host finished while "
            "offline on the remote after the heal (as the result or a late-result note); `fleetq fsck` clean.",
            *([""] + ["Problems:"] + [f"- {p}" for p in rep.problems] if rep.problems else []),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    shutil.rmtree(base, ignore_errors=True)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
