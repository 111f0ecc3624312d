"""Running fleetq's click group as a program: a FleetqError becomes one line and its exit code.

Shared by the entry point (fleetq/cli/app.py ``main``) and the interactive shell
(fleetq/cli/commands/shell.py), which runs each line it reads the same way.
"""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.errors import FleetqError


def run(group: click.Group, argv: list[str] | None = None) -> int:
    """Run ``group`` on ``argv`` (None: sys.argv) and return the exit code, printing errors as one line."""
    try:
        # Non-standalone, click returns the code of a ctx.exit(n) instead of raising it.
        rv = group.main(args=argv, prog_name="fleetq", standalone_mode=False)
    except FleetqError as e:
        if str(e):
            output.failure(f"fleetq: {e}")
        return e.exit_code
    except click.exceptions.Abort:
        output.failure("aborted")
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
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
