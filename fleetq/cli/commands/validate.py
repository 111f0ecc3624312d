"""`fleetq validate`: check task and config files before they are committed."""

from __future__ import annotations

from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import FleetqError, Reported
from fleetq.trust import checks


def _collect(root: Path, paths: tuple[str, ...]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    targets = [Path(p) for p in paths] or [root / "queue", root / "config"]
    for target in targets:
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
    """Check task files (and config) in the working tree; exit 1 if any is bad."""
    root = app.fleet().root
    files = _collect(root, paths)
    found = checks.check_files(files)
    if as_json:
        output.emit_json({"checked": len(files), "problems": [f.__dict__ for f in found]})
    else:
        for f in found:
            output.error(str(f))
        output.info(f"{len(files)} files checked, {len(found)} problems")
    if found:
        raise Reported()


commands = [validate]
