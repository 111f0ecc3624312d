"""`fleetq schedule add|list|rm`: cron schedules in config/schedules.yaml."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import schedules as schedmod
from fleetq.core import submit
from fleetq.core.cas import Plan, transact
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import now_utc


@click.group()
def schedule() -> None:
    """Cron-style schedules that queue tasks (each fire exactly once across the fleet)."""


@schedule.command("add")
@click.argument("name")
@click.argument("cron")
@click.argument("description", nargs=-1, required=True)
@click.option("--tz", "timezone", default="UTC", show_default=True, help="Time zone of the cron expression.")
@click.option("--type", "type_", metavar="T", help="Task type (default: run_script with a script, else agent_run).")
@click.option("--machine", "target", metavar="M", help="Pin the fired tasks to a machine.")
@click.option("--agent", metavar="A", help="Agent for agent_run tasks.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Task field or payload key (repeatable).")
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@pass_app
def add(
    app: AppContext,
    name: str,
    cron: str,
    description: tuple[str, ...],
    timezone: str,
    type_: str | None,
    target: str | None,
    agent: str | None,
    sets: tuple[str, ...],
    replace: bool,
) -> None:
    """Add schedule NAME firing at CRON (e.g. '0 3 * * *') with a task described by DESCRIPTION."""
    task: dict = {"title": " ".join(description)}
    for key, value in (("type", type_), ("target", target), ("agent", agent)):
        if value:
            task[key] = value
    submit.apply_sets(task, list(sets))
    if task.get("type", "agent_run") == "agent_run" and "script" not in task.get("payload", {}):
        task.setdefault("payload", {}).setdefault("prompt", task["title"])
    s = schedmod.Schedule(name, cron, timezone, task)
    fleet = app.fleet()
    transact(
        fleet,
        lambda snap: Plan(
            changes=schedmod.add_change(snap, s, replace=replace), subject=f"fleetq: schedule {name} ({cron})"
        ),
    )
    fleet.refresh_checkout()
    output.info(f"schedule {name}: next fire {s.next_fire(now_utc()):%Y-%m-%d %H:%M}Z")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """Schedules with their next fire time."""
    snap: Snapshot = app.fleet().snapshot(tolerate_offline=True)
    rows = []
    for s in schedmod.load(snap):
        rows.append(
            {
                "name": s.name,
                "cron": s.cron,
                "timezone": s.timezone,
                "next": f"{s.next_fire(now_utc()):%Y-%m-%dT%H:%M}Z",
                "type": s.task.get("type", "agent_run"),
                "title": s.task.get("title", ""),
            }
        )
    if as_json:
        output.emit_json(rows)
    else:
        output.emit_table(
            [list(r.values()) for r in rows], ["Name", "Cron", "TZ", "Next", "Type", "Title"], empty="(no schedules)"
        )


@schedule.command("rm")
@click.argument("name")
@pass_app
def rm(app: AppContext, name: str) -> None:
    """Remove schedule NAME."""
    fleet = app.fleet()
    transact(
        fleet, lambda snap: Plan(changes=schedmod.rm_change(snap, name), subject=f"fleetq: remove schedule {name}")
    )
    fleet.refresh_checkout()
    output.info(f"removed schedule {name}")


commands = [schedule]
