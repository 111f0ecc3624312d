"""Every table, JSON document and status line fleetq prints goes through here."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
from tabulate import tabulate


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True)


def emit_table(rows: Iterable[Sequence[Any]], headers: Sequence[str], empty: str = "(nothing)") -> None:
    text = table(rows, headers)
    click.echo(text if text else empty)


def emit_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned ``key  value`` lines (for ``show``-style output)."""
    pairs = [(k, "" if v is None else v) for k, v in pairs]
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        text = str(v)
        if "\n" in text:
            pad = "\n" + " " * (width + 2)
            text = pad.join(text.splitlines())
        click.echo(f"{k.ljust(width)}  {text}")


def info(msg: str) -> None:
    click.echo(msg)


def warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def error(msg: str) -> None:
    click.echo(f"fleetq: error: {msg}", err=True)


def preview(text: Any, width: int = 60) -> str:
    """One line, at most ``width`` characters."""
    s = " ".join(str(text or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def is_tty() -> bool:
    return sys.stdout.isatty()
