"""`fleetq validate`: check the queue and config as the fleet will see them, before a commit or push."""

from __future__ import annotations

from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import FleetqError, RemoteError, Reported
from fleetq.git.local import local_changes
from fleetq.layout import CONFIG_DIR, QUEUE, TRACKING
from fleetq.trust.checks import touched_ids
from fleetq.trust.survey import CACHE_FILE, survey


def _collect(root: Path, paths: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for target in (Path(p) for p in paths):
        target = target if target.is_absolute() else (Path.cwd() / target)
        if not target.exists():
            raise FleetqError(f"{target}: no such file or directory")
        if not target.resolve().is_relative_to(root):
            raise FleetqError(f"{target}: not inside the fleet clone {root}")
        for f in [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file()):
            try:
                rel = f.resolve().relative_to(root).as_posix()
            except ValueError:
                rel = None
            if rel is None:
                raise FleetqError(f"{f}: not inside the fleet clone {root}")
            if Path(rel).name.startswith("."):
                continue
            files[rel] = f.read_bytes()
    return files


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def validate(app: AppContext, paths: tuple[str, ...], as_json: bool) -> None:
    """Check the queue and config as the fleet will see them, with your local changes; exit 1 if any is bad.

    That is the remote's head (fetched; the last fetch when offline) with your uncommitted, untracked
    and unpushed files laid over it, or only PATHS in that context: the problems `queue` warns
    about and the hooks refuse.
    """
    fleet = app.fleet()
    try:
        with fleet.lock:
            head = fleet.repo.fetch(machines=True)
    except RemoteError:
        output.warn("remote unreachable: checked against the last fetch")
        head = fleet.repo.rev(TRACKING)
    overlay = local_changes(fleet.repo, (QUEUE, CONFIG_DIR))
    given = _collect(fleet.root, paths)
    found = survey(fleet.repo, head, overlay={**overlay, **given}, cache=fleet.state_dir / CACHE_FILE)
    problems, checked = found.findings, found.checked
    if paths:
        ids = touched_ids(given)
        problems = [f for f in problems if f.path in given or f.task_id in ids]
        checked = len(given)
    if as_json:
        output.emit_json({"checked": checked, "problems": [f.to_json() for f in problems]})
    else:
        for f in problems:
            output.error(str(f))
        output.info(f"{checked} files checked, {len(problems)} problems")
    if problems:
        raise Reported()


commands = [validate]
