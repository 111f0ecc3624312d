"""`fleetq hooks`: install, remove and inspect fleetq's git hooks (and the entry points they call)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import Reported
from fleetq.git.repo import GitRepo
from fleetq.trust import hooks as hooksmod

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
bare_option = click.option(
    "--bare",
    "bare",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="A bare remote (the server side: pre-receive) instead of this clone.",
)


def _target(app: AppContext, bare: Path | None) -> tuple[GitRepo, tuple[str, ...]]:
    if bare is not None:
        return GitRepo(bare.expanduser()), hooksmod.SERVER_HOOKS
    return app.fleet().repo, hooksmod.CLIENT_HOOKS


@click.group()
def hooks() -> None:
    """fleetq's git hooks: pre-commit in a clone, pre-receive on a self-hosted remote."""


@hooks.command()
@bare_option
@pass_app
def install(app: AppContext, bare: Path | None) -> None:
    """Install the hooks (a hook that is not fleetq's is kept and chained, never overwritten).

    With --bare DIR, prepare DIR as a fleet remote: a bare repo that refuses history
    rewrites, never auto-gcs during pushes, and checks every push (pre-receive).
    """
    msgs = hooksmod.prepare_bare(bare) if bare is not None else hooksmod.install(app.fleet().repo)
    for m in msgs:
        output.info(m)


@hooks.command()
@bare_option
@pass_app
def uninstall(app: AppContext, bare: Path | None) -> None:
    """Remove fleetq's hooks only, putting back any hook they chained to."""
    repo, names = _target(app, bare)
    for m in hooksmod.uninstall(repo, names):
        output.info(m)


@hooks.command()
@bare_option
@json_option
@pass_app
def status(app: AppContext, bare: Path | None, as_json: bool) -> None:
    """Which hooks are installed, and whether each is fleetq's."""
    repo, names = _target(app, bare)
    states = hooksmod.status(repo, names)
    if as_json:
        output.emit_json([s.to_json() for s in states])
    else:
        for s in states:
            output.info(s.describe())


@hooks.command("run", hidden=True)
@click.argument("name", type=click.Choice(hooksmod.CLIENT_HOOKS + hooksmod.SERVER_HOOKS))
def run_hook(name: str) -> None:
    """Run a hook's checks here, as git would (pre-receive reads `old new ref` lines on stdin)."""
    code = hooksmod.run(name, cwd=Path.cwd(), stdin=sys.stdin if name == "pre-receive" else None)
    if code:
        raise Reported(code)


commands = [hooks]
