"""`fleetq assign`: queue a task (auto-routed with `--machine auto`, or at a terminal when left open)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import submit, transitions
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import PENDING, task_path
from fleetq.core.task import Task
from fleetq.errors import Reported, UsageError
from fleetq.fleet import remote, routing
from fleetq.fleet.view import open_view
from fleetq.layout import TRACKING
from fleetq.trust.reach import Reach


def _confirm(as_json: bool) -> bool:
    """`Confirm? [Y/n]`; no answer to read (stdin is not a terminal and at its end) is a usage error."""
    try:
        return click.confirm("Confirm?", default=True, err=as_json)
    except click.exceptions.Abort:
        if sys.stdin is None or not sys.stdin.isatty():
            raise UsageError("assign --machine auto asks to confirm and stdin is not a terminal: pass --yes") from None
        raise


def _route(
    fleet: Fleet, req: submit.Request, yes: bool, as_json: bool
) -> tuple[submit.Request, Snapshot, routing.Route]:
    """Fill machine/agent/type, show them with the reason, and ask `Confirm? [Y/n]` unless --yes."""
    say = output.note if as_json else output.info
    view = open_view(fleet)
    r = routing.route(req, view.snap, view.cfg, view.beats, fleet_dir=fleet.root, state_dir=fleet.state_dir, say=say)
    for n in r.notes:
        output.warn(n)
    pairs = [("Machine", r.machine), ("Agent", r.agent or "-"), ("Task type", r.type), ("Reason", r.reason)]
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        say(f"{k.ljust(width)}  {v}")
    if not yes and not _confirm(as_json):
        say("not queued")
        raise Reported(1)
    return routing.applied(req, r), view.snap, r


@click.command()
@click.argument("description", nargs=-1, required=True)
@click.option(
    "--machine",
    "target",
    metavar="M",
    help="Run only on this machine (hard pin); 'auto' picks one (and agent, type) and asks you to confirm; "
    "'any' leaves it to whichever capable machine claims it first.",
)
@click.option(
    "--agent", metavar="A", help="Agent for agent_run tasks (claude, gemini, codex, groq, ...; '-' for none)."
)
@click.option("--type", "type_", metavar="T", help="Task type (agent_run, run_script, test_run, ...).")
@click.option("--cwd", metavar="DIR", help="Working directory on the machine that runs it.")
@click.option("--priority", type=int, help="Higher runs first (default 0).")
@click.option("--prefer", metavar="M", help="Soft preference: others may take it after the grace period.")
@click.option("--after", multiple=True, metavar="ID", help="Run only after this task is done (repeatable).")
@click.option("--timeout", type=float, metavar="S", help="Kill the run after S seconds.")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a task field, or a payload key (repeatable)."
)
@click.option("--id", "task_id", metavar="ID", help="Use this id instead of a random one.")
@click.option(
    "--sync",
    "sync_path",
    metavar="PATH",
    type=click.Path(exists=True, file_okay=False),
    help="Before it runs, the machine pulls PATH from this machine with rsync (and runs there unless --cwd).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm an auto-routed choice.")
@click.option(
    "--force", is_flag=True, help="Queue it even when no machine could ever run it (a machine still to join)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
@pass_app
def assign(
    app: AppContext,
    description: tuple[str, ...],
    target: str | None,
    agent: str | None,
    type_: str | None,
    cwd: str | None,
    priority: int | None,
    prefer: str | None,
    after: tuple[str, ...],
    timeout: float | None,
    sets: tuple[str, ...],
    task_id: str | None,
    sync_path: str | None,
    yes: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Queue a task described by DESCRIPTION; prints its id."""
    fleet = app.fleet()
    req = submit.Request(
        " ".join(description), target, agent, type_, cwd, priority, prefer, list(after), timeout, list(sets), task_id
    )
    route = None
    if routing.wants_routing(req, interactive=sys.stdin.isatty() and sys.stdout.isatty()):
        req, snap, route = _route(fleet, req, yes, as_json)
    else:
        snap = fleet.snapshot()
        if req.machine == routing.ANY:
            req.machine = None
    cfg = fleet.config(snap)
    data, warnings = submit.build(req, snap, cfg, created_by=fleet.machine)
    never = Reach.at(snap).never(Task(data=data, state=PENDING, path=task_path(PENDING, data["id"])))
    if never and not force:
        raise UsageError(f"no machine could ever run this task: {never} (--force queues it anyway)")
    if never:
        warnings.append(f"queued, though no machine could ever run it yet: {never}")
    if sync_path:
        sync = remote.sync_request(cfg, fleet.machine, Path(sync_path))
        data["payload"]["sync"] = sync
        data["payload"].setdefault("cwd", sync["path"])
    for w in warnings:
        output.warn(w)
    transitions.create(fleet, [data], sign=transitions.signs(fleet))
    fleet.refresh_checkout()
    if as_json:
        doc = Snapshot(fleet.repo, fleet.repo.rev(TRACKING)).get(data["id"]).to_json()
        if route is not None:
            doc["route"] = route.to_json()
        output.emit_json(doc)
    else:
        output.info(data["id"])


commands = [assign]
