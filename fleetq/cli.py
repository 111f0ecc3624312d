"""The click layer: global options, command registration, and the one place errors become exit codes."""
from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .context import AppContext
from .errors import FleetqError

# One module per command group under fleetq/commands; each exports `commands`.
COMMAND_MODULES = (
    "init", "assign", "queue", "resolve", "validate", "work", "schedule", "agent",
    "fleetview", "placement", "parallel", "skills", "remote", "shell", "hooks", "fsck",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             invoke_without_command=True)
@click.option("--fleet", "fleet_dir", metavar="DIR", envvar=None, help="Fleet clone to use (default: $FLEETQ_FLEET, the repo around you, your default).")
@click.option("--machine", metavar="NAME", help="This machine's name (default: $FLEETQ_MACHINE, the clone's config, the host name).")
@click.version_option(__version__, prog_name="fleetq")
@click.pass_context
def root(ctx: click.Context, fleet_dir: str | None, machine: str | None) -> None:
    """fleetq: run agents and jobs across your machines, with a git repo as the queue."""
    ctx.obj = AppContext(fleet_dir=fleet_dir, machine=machine)
    if ctx.invoked_subcommand is None:  # bare `fleetq`: the shell at a terminal, else the help
        if sys.stdin.isatty() and sys.stdout.isatty() and "shell" in root.commands:
            ctx.invoke(root.commands["shell"])
        else:
            click.echo(ctx.get_help())


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"fleetq.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"fleetq.commands.{name}":
                continue
            raise
        for cmd in mod.commands:
            root.add_command(cmd)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning a FleetqError into one line and its exit code."""
    try:
        root.main(args=argv, prog_name="fleetq", standalone_mode=False)
    except FleetqError as e:
        if str(e):
            click.echo(f"fleetq: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
