"""`fleetq fsck` (check and repair the queue) and `fleetq maintenance` (git housekeeping)."""

from __future__ import annotations

from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import Reported, UsageError
from fleetq.git.inspect import maintenance as run_maintenance
from fleetq.trust import fsck as fsckmod


@click.command()
@click.option("--fix", is_flag=True, help="Repair what is safe to repair, each in its own commit that says why.")
@click.option(
    "--lease",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Age after which a claim by a machine that never beat is handed back (default: fleet config).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def fsck(app: AppContext, fix: bool, lease: float | None, as_json: bool) -> None:
    """Check the queue for damage: duplicates, bad files, ghost claims, missing dependencies. Exit 1 if any remain."""
    report = fsckmod.fsck(app.fleet(), fix=fix, lease=lease)
    if as_json:
        output.emit_json(report.to_json())
    else:
        for line in report.fixed:
            output.info(f"fixed: {line}")
        for line in report.failed:
            output.error(line)
        rows = [[i.kind, i.detail, i.fix or "(report only)"] for i in report.remaining]
        if rows:
            output.emit_table(rows, ["Problem", "Detail", "--fix would"] if not fix else ["Problem", "Detail", "Fix"])
        else:
            output.info("queue is consistent" + (f" ({len(report.fixed)} repaired)" if report.fixed else ""))
    if report.remaining or report.failed:
        raise Reported()


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", "on_remote", is_flag=True, help="Run it on the clone's origin (a local path).")
@pass_app
def maintenance(app: AppContext, path: Path | None, on_remote: bool) -> None:
    """git gc and a commit-graph with changed-path filters, on PATH, the origin (--remote) or this clone.

    Fleet remotes never gc during pushes (gc.auto 0, receive.autogc false): run this
    now and then (e.g. weekly from cron) where the remote lives.
    """
    if path is not None and on_remote:
        raise UsageError("give a PATH or --remote, not both")
    if path is None:
        repo = app.fleet().repo
        path = repo.path
        if on_remote:
            url = repo.remote_url() or ""
            target = Path(url.removeprefix("file://")).expanduser()
            if not url or not target.is_dir():
                raise UsageError(
                    f"the origin {url or '(none)'} is not a local path: run `fleetq maintenance PATH` "
                    "on the machine that hosts it"
                )
            path = target
    if not path.is_dir():
        raise UsageError(f"{path}: no such directory")
    for step in run_maintenance(path):
        output.info(f"{path}: {step}")


commands = [fsck, maintenance]
