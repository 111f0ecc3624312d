"""A person's verdicts: `resolve`, `cancel`, `archive`."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import archive as archiving
from fleetq.core import transitions


@click.command()
@click.argument("task_id", metavar="ID|all")
@click.argument("to", required=False, default="done", type=click.Choice(["done", "pending", "failed"]))
@click.option("--notes", metavar="TEXT", help="Why: kept on the task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def resolve(app: AppContext, task_id: str, to: str, notes: str | None, as_json: bool) -> None:
    """Mark a task done, re-queue it (pending), or record it failed. `all` takes every needs_human task."""
    fleet = app.fleet()
    moves = transitions.resolve(fleet, [task_id], to, notes, all_waiting=task_id == "all")
    fleet.refresh_checkout()
    output.emit_moves(moves, as_json)


@click.command()
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", metavar="TEXT", help="Kept on the task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def cancel(app: AppContext, task_ids: tuple[str, ...], reason: str | None, as_json: bool) -> None:
    """Cancel pending or running tasks (a running one is killed by its worker)."""
    fleet = app.fleet()
    moves = transitions.cancel(fleet, list(task_ids), reason)
    fleet.refresh_checkout()
    output.emit_moves(moves, as_json)


@click.command()
@click.option("--before", required=True, metavar="YYYY-MM-DD", help="Archive done tasks of days before this one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def archive(app: AppContext, before: str, as_json: bool) -> None:
    """Take old done/ day shards out of the tree (git history and `fleetq log` keep them)."""
    fleet = app.fleet()
    days = archiving.archive(fleet, before)
    fleet.refresh_checkout()
    if as_json:
        output.emit_json({"archived_days": days})
    else:
        output.info(f"archived {len(days)} day(s)" + (f": {', '.join(days)}" if days else ""))


commands = [resolve, cancel, archive]
