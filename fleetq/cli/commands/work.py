"""The worker side: `work`, `reap`, `logs`."""

from __future__ import annotations

import logging
import sys

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import reaper
from fleetq.errors import NotFound, UsageError
from fleetq.worker.daemon import Worker


@click.command()
@click.option("--once", is_flag=True, help="One pass: claim what fits, run it to the end, report, exit (for cron).")
@click.option("--burst", is_flag=True, help="Drain the queue, then exit.")
@click.option("--slots", type=click.IntRange(1, 256), help="Tasks run at once (default: machines.yaml, else 2).")
@click.option(
    "--poll", type=click.FloatRange(0.05), metavar="SECONDS", help="Timer between passes (default: fleet config, 5)."
)
@click.option("--lease", type=click.FloatRange(1), metavar="SECONDS", help="Heartbeat silence that orphans a claim.")
@click.option("--heartbeat", type=click.FloatRange(0.2), metavar="SECONDS", help="Seconds between heartbeats.")
@click.option(
    "--grace", type=click.FloatRange(0), metavar="SECONDS", help="How long a `prefer`red task waits for its machine."
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--force", is_flag=True, help="Run even though this machine name is live from another host or clone.")
@pass_app
def work(
    app: AppContext,
    once: bool,
    burst: bool,
    slots: int | None,
    poll: float | None,
    lease: float | None,
    heartbeat: float | None,
    grace: float | None,
    quiet: bool,
    force: bool,
) -> None:
    """Run tasks from the queue on this machine. SIGTERM/Ctrl-C: finish running tasks; twice: hand them back."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    fleet = app.fleet()
    worker = Worker(
        fleet,
        slots=slots,
        poll=poll,
        lease=lease,
        once=once,
        burst=burst,
        heartbeat=heartbeat,
        grace=grace,
        force=force,
    )
    worker.run()


@click.command()
@click.option(
    "--lease", type=click.FloatRange(1), metavar="SECONDS", help="Silence that orphans a claim (default: fleet config)."
)
@click.option("--force", is_flag=True, help="Use a --lease shorter than the fleet's and the workers' own.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def reap(app: AppContext, lease: float | None, force: bool, as_json: bool) -> None:
    """Hand orphaned claims (their machine stopped beating) back to pending, or to failed when attempts are spent."""
    fleet = app.fleet()
    snap = fleet.snapshot()
    fleet_lease = float(fleet.config(snap).get("lease"))
    if lease is not None and lease < fleet_lease and not force:
        raise UsageError(
            f"--lease {lease:g} is shorter than the fleet's lease ({fleet_lease:g}s): it could take a live worker's "
            "claim before that worker's fence stops the run; pass --force to insist"
        )
    moves = reaper.reap(fleet, lease if lease is not None else fleet_lease, forced=force)
    output.emit_moves(moves, as_json, nothing="no orphaned claims")


@click.command()
@click.argument("task_id")
@click.option("--tail", "-n", type=int, default=0, help="Only the last N lines.")
@pass_app
def logs(app: AppContext, task_id: str, tail: int) -> None:
    """The full log of a task's runs on this machine."""
    fleet = app.fleet()
    snap = fleet.snapshot(tolerate_offline=True)
    t = snap.get(task_id)
    path = fleet.state_dir / "logs" / f"{t.id}.log"
    if not path.exists():
        where = t.result.get("machine") or t.claim.get("machine")
        hint = (
            f"; it ran on {where}: `fleetq --machine {where} logs {t.id}` there"
            if where and where != fleet.machine
            else ""
        )
        raise NotFound(f"no log of {t.id} on {fleet.machine}{hint}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if tail:
        text = "\n".join(text.splitlines()[-tail:]) + "\n"
    output.info(text, nl=False)


commands = [work, reap, logs]
