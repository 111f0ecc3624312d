"""Every table, JSON document and status line fleetq prints goes through here.

Text that reaches a terminal may come from anyone who can push (titles, notes, results): every printer
but ``emit_json`` (whose ``json.dumps`` escapes controls already) passes it through ``clean`` first, so
no escape sequence in a task can retitle a window, clear the screen or rewrite what was printed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

# ESC sequences (CSI; OSC, DCS, SOS, PM, APC strings to their terminator; two-byte escapes), their 8-bit
# forms, and every other C0/C1 control but newline and tab.
_CONTROLS = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: Any) -> str:
    """``text`` without terminal control sequences or control characters (newlines and tabs stay)."""
    return _CONTROLS.sub("", str(text))


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    from tabulate import tabulate  # imported on use: it costs ~15 ms of every start-up

    rows = [[clean("" if c is None else c) for c in row] for row in rows]
    if not rows:
        return ""
    return tabulate(rows, headers=[clean(h) for h in headers], tablefmt="simple", disable_numparse=True)


def emit_table(rows: Iterable[Sequence[Any]], headers: Sequence[str], empty: str = "(nothing)") -> None:
    text = table(rows, headers)
    click.echo(text if text else empty)


def emit_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned ``key  value`` lines (for ``show``-style output)."""
    pairs = [(clean(k), clean("" if v is None else v)) for k, v in pairs]
    width = max((len(k) for k, _ in pairs), default=0)
    for k, text in pairs:
        if "\n" in text:
            pad = "\n" + " " * (width + 2)
            text = pad.join(text.splitlines())
        click.echo(f"{k.ljust(width)}  {text}")


def info(msg: str = "", *, nl: bool = True) -> None:
    click.echo(clean(msg), nl=nl)


def emit_data(text: str) -> None:
    """Text that is data (a patch): exact when stdout is a pipe or file, ``clean`` on a terminal."""
    click.echo(text if not is_tty() else clean(text), nl=False)


def failure(msg: str) -> None:
    """The one line a command that could not do what was asked leaves on stderr."""
    click.echo(clean(msg), err=True)


def warn(msg: str) -> None:
    click.echo(f"warning: {clean(msg)}", err=True)


def error(msg: str) -> None:
    click.echo(f"fleetq: error: {clean(msg)}", err=True)


def preview(text: Any, width: int = 60) -> str:
    """One line, at most ``width`` characters."""
    s = " ".join(clean(text or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def is_tty() -> bool:
    return sys.stdout.isatty()


def flush() -> None:
    sys.stdout.flush()


def stdout_closed() -> None:
    """stdout's reader went away (``fleetq queue | head -1``): what is left goes to /dev/null, so the
    interpreter's last flush at exit does not fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (captured in tests): nothing will flush to a pipe
        pass


# -- fleet views: boxes, banners, a live progress line (appended for status/monitor/wait/shell) --

# corners (top left, top right, bottom left, bottom right), then the horizontal and vertical rules
_BOX: dict[str, tuple[str, str, str, str, str, str]] = {
    "single": ("┌", "┐", "└", "┘", "─", "│"),
    "round": ("╭", "╮", "╰", "╯", "─", "│"),
}


def text_width(s: str) -> int:
    """Columns ``s`` takes on a terminal (wide East Asian characters count two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in s)


def fit(s: str, width: int) -> str:
    """``s`` cut (with …) or padded to exactly ``width`` columns."""
    if text_width(s) > width:
        while s and text_width(s) > width - 1:
            s = s[:-1]
        s += "…"
    return s + " " * (width - text_width(s))


def box(title: str, lines: Sequence[str], *, width: int = 0, style: str = "single", center: bool = False) -> str:
    """A framed block: ``┌─ title ──┐`` then one ``│ line │`` per line, ``└──┘``."""
    tl, tr, bl, br, h, v = _BOX[style]
    title, lines = clean(title), [clean(x) for x in lines]
    inner = max([width - 4, text_width(title) + 2, *(text_width(x) for x in lines)])
    head = f"{tl}{h} {title} " if title else tl
    out = [head + h * (inner + 3 - text_width(head)) + tr]
    for line in lines:
        if center:
            pad = inner - min(inner, text_width(line))
            line = " " * (pad // 2) + line
        out.append(f"{v} {fit(line, inner)} {v}")
    out.append(bl + h * (inner + 2) + br)
    return "\n".join(out)


def terminal_width(default: int = 80) -> int:
    import shutil

    return shutil.get_terminal_size((default, 24)).columns


def progress(text: str) -> None:
    """Rewrite one live status line in place (only on a terminal; silent otherwise)."""
    if is_tty():
        width = terminal_width() - 1
        sys.stdout.write("\r\x1b[2K" + fit(clean(text), width).rstrip())
        sys.stdout.flush()


def progress_end() -> None:
    """Clear the live status line before normal output follows."""
    if is_tty():
        sys.stdout.write("\r\x1b[2K")
        sys.stdout.flush()


def clear_screen() -> None:
    if is_tty():
        sys.stdout.write("\x1b[H\x1b[2J")
        sys.stdout.flush()


def note(msg: str) -> None:
    """A human-readable line on stderr (used when stdout carries JSON)."""
    click.echo(clean(msg), err=True)


def emit_moves(moves: list[tuple[str, str, str]], as_json: bool, *, nothing: str = "nothing to change") -> None:
    """Transitions a command made: `id: from -> to` lines, or JSON."""
    if as_json:
        emit_json([{"id": i, "from": a, "to": b} for i, a, b in moves])
    elif not moves:
        info(nothing)
    else:
        for i, a, b in moves:
            info(f"{i}: {a} -> {b}")
