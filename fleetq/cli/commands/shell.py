"""`fleetq shell`: the interactive prompt (also what `fleetq` with no arguments starts at a terminal)."""

from __future__ import annotations

import click

from fleetq.cli.context import AppContext
from fleetq.cli.runner import run
from fleetq.cli.shell import Shell, banner_text, fleet_names


@click.command()
@click.pass_context
def shell(ctx: click.Context) -> None:
    """Interactive shell: a banner with the fleet, then any fleetq command at a `fleetq ›` prompt."""
    app = ctx.find_object(AppContext) or AppContext()
    prefix = (["--fleet", app.fleet_dir] if app.fleet_dir else []) + (["--machine", app.machine] if app.machine else [])
    group = ctx.find_root().command
    assert isinstance(group, click.Group)
    Shell(
        group,
        lambda argv: run(group, argv),  # as the entry point runs it (fleetq/cli/app.py main)
        prefix,
        lambda: fleet_names(app.fleet_dir, app.machine),
        lambda: banner_text(app.fleet_dir, app.machine),
    ).loop()


commands = [shell]
