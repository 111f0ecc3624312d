"""The worker side: `work`, `reap`, `logs` (fleetq/fleet/logs.py)."""

from __future__ import annotations

import logging
import sys

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import reaper
from fleetq.core.states import DONE
from fleetq.errors import Reported, UsageError
from fleetq.fleet import logs as tasklogs
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
@click.option("--tail", "-n", type=click.IntRange(0), default=0, help="Only the last N lines.")
@click.option(
    "--follow", "-f", is_flag=True, help="Stream a running task's output until it ends (exit 1 if it did not succeed)."
)
@click.option("--full", is_flag=True, help="From another machine: fetch the full log from the worker over SSH.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (id, state, machine, source, lines).")
@pass_app
def logs(app: AppContext, task_id: str, tail: int, follow: bool, full: bool, as_json: bool) -> None:
    """A task's output: the full log here, live output or the result's tails from any other clone."""
    if follow and (as_json or full):
        raise UsageError("--follow streams text; use --json or --full without --follow")
    fleet = app.fleet()
    if not follow:
        view = tasklogs.show(fleet, task_id, tail=tail, full=full)
        if as_json:
            output.emit_json(view.to_json())
            return
        _print_view(view)
        return

    def on_lines(lines: list[str]) -> None:
        for line in lines:
            output.info(line)
        output.flush()

    view = tasklogs.follow(fleet, task_id, on_lines, tail=tail)
    _print_view(view, ended=True)
    if view.state != DONE:  # like `fleetq wait`: a run that did not succeed (or went back to pending) is exit 1
        raise Reported(1)


def _print_view(view: tasklogs.LogView, *, ended: bool = False) -> None:
    """Log lines on stdout; where they come from and how the run ended on stderr (a pipe gets the log only)."""
    for line in view.lines:
        output.info(line)
    if view.stderr:
        output.info("--- stderr ---")
        for line in view.stderr:
            output.info(line)
    if view.note and view.source != tasklogs.LOCAL:
        output.note(view.note)
    if view.summary and (ended or view.source != tasklogs.LOCAL):  # a local log's own footer says how it ended
        output.note(f"{view.id}: {view.summary}")


commands = [work, reap, logs]
