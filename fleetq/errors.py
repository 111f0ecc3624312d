"""The one base exception: every expected failure is a FleetqError.

The CLI turns it into one readable line and its exit code (see ``cli.main``);
the worker logs it and moves on.
"""

from __future__ import annotations

import re


class FleetqError(Exception):
    """A failure the user can understand and act on."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(FleetqError):
    """Bad arguments or input given to a command."""

    exit_code = 2


class InvalidTask(FleetqError):
    """A task file or task data that does not validate."""


class NotFound(FleetqError):
    """No task, machine or fleet by that name: bad input, like a usage error."""

    exit_code = 2


class Ambiguous(UsageError):
    """A short id prefix that names more than one task."""


class RemoteError(FleetqError):
    """The remote cannot be reached, or refused a push for a reason other than a race."""

    exit_code = 3


class Conflict(FleetqError):
    """A transition lost its race too many times, or is no longer legal."""

    exit_code = 4


class Reported(FleetqError):
    """The command already printed what went wrong; just exit non-zero."""

    def __init__(self, exit_code: int = 1) -> None:
        super().__init__("", exit_code=exit_code)


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """Text without terminal escape sequences (colours, cursor moves, OSC titles)."""
    return _ANSI.sub("", text)


def last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one (for a one-line error), colour codes gone."""
    for t in texts:
        lines = [ln.strip() for ln in strip_ansi(t or "").splitlines() if ln.strip()]
        if lines:
            line = lines[-1]
            return line if len(line) <= 200 else line[:199] + "…"
    return ""
