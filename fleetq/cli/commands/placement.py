"""`fleetq pick`: where should this run? Ranked machines, one line of why each."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import Reported, UsageError
from fleetq.fleet.placement import Need, Placer, Ranking
from fleetq.fleet.view import liveness, open_view


def _rows(r: Ranking) -> list[list[str]]:
    rows = []
    for i, c in enumerate(r.ranked, 1):
        score = "-" if c.effective is None else f"{c.effective:.2f}"
        rows.append([str(i), c.name, liveness(c.m), score, c.explain(r.weights)])
    for c in r.excluded:
        rows.append(["-", c.name, liveness(c.m), "-", c.explain(r.weights)])
    return rows


@click.command()
@click.option("--type", "type_", metavar="T", help="Task type it must be able to run.")
@click.option("--requires", multiple=True, metavar="CAP", help="Capability it must have (repeatable).")
@click.option("--agent", metavar="A", help="Agent that must be installed there.")
@click.option(
    "--count",
    "-n",
    type=int,
    default=1,
    show_default=True,
    help="Place this many tasks (each pick penalises the machine for the next).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def pick(
    app: AppContext, type_: str | None, requires: tuple[str, ...], agent: str | None, count: int, as_json: bool
) -> None:
    """Rank the machines that may run a task: requirements filter, load score ranks, round-robin without metrics."""
    if count < 1:
        raise UsageError("--count must be at least 1")
    fleet = app.fleet()
    v = open_view(fleet)
    placer = Placer(v.cfg, v.beats, snap=v.snap)  # no state_dir: a query does not move the round-robin cursor
    need = Need(type_, list(requires), agent)
    rankings = [placer.pick(need) for _ in range(count)]
    first = rankings[0]
    if as_json:
        doc = first.to_json()
        if count > 1:
            doc["batch"] = [r.choice.name if r.choice else None for r in rankings]
        output.emit_json(doc)
        return
    output.emit_table(_rows(first), ["#", "Machine", "Heartbeat", "Score", "Why"], empty="(no machines declared)")
    output.info("")
    if first.choice is None:
        output.info(f"no machine: {first.why}")
    else:
        output.info(f"→ {first.choice.name}: {first.why}")
    if count > 1:
        output.info("batch: " + ", ".join(r.choice.name if r.choice else "-" for r in rankings))
    if v.warning:
        output.warn(v.warning)
    if first.choice is None:
        raise Reported(1)


commands = [pick]
