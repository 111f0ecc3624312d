"""`fleetq init` and `fleetq join`."""

from __future__ import annotations

from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.fleet import initfleet


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", metavar="URL", help="Use this remote (empty: push a new fleet to it; a fleet: adopt it).")
@click.option("--machine", "machine", metavar="NAME", help="This machine's name in the fleet.")
@click.option(
    "--bare", is_flag=True, help="Make DIRECTORY a self-hosted fleet remote (bare repo, pre-receive hook, no auto-gc)."
)
@pass_app
def init(app: AppContext, directory: Path, remote: str | None, machine: str | None, bare: bool) -> None:
    """Make a fleet clone at DIRECTORY (with no --remote, a local bare repo is its origin)."""
    if bare:
        from fleetq.trust.hooks import prepare_bare

        if remote:
            raise click.UsageError("--bare makes a remote; it takes no --remote")
        for line in prepare_bare(directory):
            output.info(line)
        output.info(
            f"next, on each machine: fleetq init CLONE --remote {directory.resolve()} (or ssh://HOST{directory.resolve()})"
        )
        return
    notes: list[str] = []
    fleet, url = initfleet.init(directory, remote, machine or app.machine, say=notes.append)
    output.info(f"fleet ready at {fleet.root} (machine {fleet.machine})")
    output.info(f"origin: {url}")
    for line in notes:
        output.info(line)
    output.info("next: fleetq assign 'say hello' --set script='echo hello'  then  fleetq work --burst")


@click.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--machine", "machine", metavar="NAME", help="This machine's name in the fleet.")
@click.option("--force", is_flag=True, help="Take the name even though a worker of that name is live elsewhere.")
@pass_app
def join(app: AppContext, url: str, directory: Path, machine: str | None, force: bool) -> None:
    """Clone the fleet at URL into DIRECTORY and register this machine."""
    notes: list[str] = []
    fleet = initfleet.join(url, directory, machine or app.machine, force=force, say=notes.append)
    output.info(f"joined {url} at {fleet.root} as {fleet.machine}")
    for line in notes:
        output.info(line)


commands = [init, join]
