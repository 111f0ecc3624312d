"""`fleetq assign`: queue a task."""
from __future__ import annotations

import click

from .. import output, submit, transitions
from ..context import AppContext, pass_app
from ..snapshot import Snapshot


@click.command()
@click.argument("description", nargs=-1, required=True)
@click.option("--machine", "target", metavar="M", help="Run only on this machine (hard pin).")
@click.option("--agent", metavar="A", help="Agent for agent_run tasks (claude, gemini, codex, groq, ...; '-' for none).")
@click.option("--type", "type_", metavar="T", help="Task type (agent_run, run_script, test_run, ...).")
@click.option("--cwd", metavar="DIR", help="Working directory on the machine that runs it.")
@click.option("--priority", type=int, help="Higher runs first (default 0).")
@click.option("--prefer", metavar="M", help="Soft preference: others may take it after the grace period.")
@click.option("--after", multiple=True, metavar="ID", help="Run only after this task is done (repeatable).")
@click.option("--timeout", type=float, metavar="S", help="Kill the run after S seconds.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a task field, or a payload key (repeatable).")
@click.option("--id", "task_id", metavar="ID", help="Use this id instead of a random one.")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
@pass_app
def assign(app: AppContext, description: tuple[str, ...], target: str | None, agent: str | None, type_: str | None,
           cwd: str | None, priority: int | None, prefer: str | None, after: tuple[str, ...], timeout: float | None,
           sets: tuple[str, ...], task_id: str | None, as_json: bool) -> None:
    """Queue a task described by DESCRIPTION; prints its id."""
    fleet = app.fleet()
    snap = fleet.snapshot()
    req = submit.Request(" ".join(description), target, agent, type_, cwd, priority, prefer, list(after), timeout,
                         list(sets), task_id)
    data, warnings = submit.build(req, snap, fleet.config(snap), created_by=fleet.machine)
    for w in warnings:
        output.warn(w)
    transitions.create(fleet, [data], sign=fleet.repo.config_get("commit.gpgsign") == "true")
    fleet.refresh_checkout()
    if as_json:
        output.emit_json(Snapshot(fleet.repo, fleet.repo.rev("refs/remotes/origin/main")).get(data["id"]).to_json())
    else:
        output.info(data["id"])


commands = [assign]
