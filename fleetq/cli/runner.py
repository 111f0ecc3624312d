"""Running fleetq's click group as a program: a FleetqError becomes one line and its exit code.

Shared by the entry point (fleetq/cli/app.py ``main``) and the interactive shell
(fleetq/cli/commands/shell.py), which runs each line it reads the same way. Click's
usage errors become one line too, and a stdout whose reader went away (``fleetq monitor |
head -1``) ends the command quietly with exit 0, as ``git log | head`` does.
"""

from __future__ import annotations

import re
import sys

import click

from fleetq.cli import output
from fleetq.errors import FleetqError

# Click's own messages open with a capital ("No such option"); fleetq's lines do not.
_CLICK_OPENING = re.compile(r"^(No such|Missing|Invalid|Got unexpected|Option|Argument|Error)\b")


def run(group: click.Group, argv: list[str] | None = None) -> int:
    """Run ``group`` on ``argv`` (None: sys.argv) and return the exit code, printing errors as one line."""
    stdout = sys.stdout
    code = 0  # a command cut short by its reader did all anyone reads of it
    try:
        code = _run(group, argv)
        output.flush()  # a reader gone by now fails here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        pass
    except SystemExit as e:
        # Click answers EPIPE on stdout itself, even outside standalone mode: it swaps
        # sys.stdout for a wrapper that ignores flush errors and exits 1.
        if sys.stdout is stdout or e.code != 1:
            raise
    output.stdout_closed()
    return code


def _run(group: click.Group, argv: list[str] | None) -> int:
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
    except click.UsageError as e:
        output.failure(usage_line(e))
        return e.exit_code
    except click.ClickException as e:
        output.failure(f"fleetq: {' '.join(e.format_message().split())}")
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def usage_line(e: click.UsageError) -> str:
    """Click's four-line usage error as one: ``fleetq assign: no such option '--bogus' (see fleetq assign --help)``."""
    path = e.ctx.command_path if e.ctx is not None else "fleetq"
    msg = " ".join(e.format_message().split())
    if _CLICK_OPENING.match(msg):
        msg = msg[0].lower() + msg[1:]
    return f"{path}: {msg.rstrip('.')} (see {path} --help)"
