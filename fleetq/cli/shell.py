"""The interactive shell: `fleetq shell`, or `fleetq` with no arguments at a terminal.

A banner (the fleet's machines, how many workers are online), then a
``fleetq ›`` prompt with readline history (kept in ``$XDG_STATE_HOME/fleetq``)
and tab completion of command names, their options, machine names and task ids.
Each line runs as ``fleetq <line>`` in this process (global --fleet/--machine
carried over); ``help [COMMAND]`` and ``exit`` are built in.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from fleetq.cli import output
from fleetq.core.states import DONE
from fleetq.errors import FleetqError

BUILTINS = ("help", "exit", "quit")
HISTORY_LEN = 2000


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fleetq" / "shell_history"


def prompt_text() -> str:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return "fleetq › " if "utf" in enc else "fleetq > "


@dataclass
class Names:
    """What completion offers beyond commands: machines and task ids (refreshed after each command)."""

    machines: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


class Shell:
    def __init__(
        self,
        group: click.Group,
        run: Callable[[list[str]], int],
        prefix: list[str],
        names: Callable[[], Names],
        banner: Callable[[], str],
    ) -> None:
        self.group = group
        self.run_cli = run
        self.prefix = prefix
        self.load_names = names
        self.banner = banner
        self.names = Names()
        self.last_code = 0

    # -- completion --
    def commands(self) -> list[str]:
        ctx = click.Context(self.group)  # list/get_command, not .commands: the root group loads modules lazily
        found = [n for n in self.group.list_commands(ctx) if n != "shell"]
        return sorted(
            [n for n in found if not getattr(self.group.get_command(ctx, n), "hidden", True)] + list(BUILTINS)
        )

    def options_of(self, words: list[str]) -> list[str]:
        cmd: click.Command | None = self.group.get_command(click.Context(self.group), words[0]) if words else None
        for w in words[1:]:
            if isinstance(cmd, click.Group) and w in cmd.commands:
                cmd = cmd.commands[w]
        if cmd is None:
            return []
        opts = [o for p in cmd.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")]
        subs = list(cmd.commands) if isinstance(cmd, click.Group) else []
        return subs + opts + ["--help"]

    def candidates(self, line: str, text: str) -> list[str]:
        words = line.split()
        if line.endswith(" ") or not words:
            words.append("")
        if len(words) <= 1 or words[0] == "help":
            pool = self.commands()
        else:
            pool = self.options_of(words[:-1]) + self.names.machines + self.names.tasks
        return sorted({p for p in pool if p.startswith(text)})

    def complete(self, text: str, state: int) -> str | None:
        try:
            import readline

            line = readline.get_line_buffer()[: readline.get_endidx()]
            found = self.candidates(line, text)
        except Exception:  # noqa: BLE001 - completion must never break the prompt
            return None
        if state >= len(found):
            return None
        return found[state] + (" " if len(found) == 1 else "")

    # -- running --
    def execute(self, line: str) -> bool:
        """Run one line; False means exit."""
        try:
            words = shlex.split(line)
        except ValueError as e:
            output.error(f"cannot parse that line: {e}")
            return True
        if not words:
            return True
        head = words[0]
        if head in ("exit", "quit"):
            return False
        if head == "help":
            self.last_code = self.run_cli(self.prefix + words[1:2] + ["--help"])
            if len(words) == 1:
                output.info("\nShell: help [COMMAND], exit (or Ctrl-D); Tab completes commands, machines and task ids.")
            return True
        if head == "shell":
            output.info("already in the fleetq shell")
            return True
        if head == "fleetq":
            words = words[1:]
        try:
            self.last_code = self.run_cli(self.prefix + words)
        except KeyboardInterrupt:
            output.info()
            self.last_code = 130
        self.refresh()
        return True

    def refresh(self) -> None:
        try:
            self.names = self.load_names()
        except Exception:  # noqa: BLE001 - completion data is best effort
            pass

    def loop(self) -> int:
        readline = _setup_readline(self.complete)
        output.info(self.banner())
        output.info("Type help for commands, exit to quit.")
        self.refresh()
        try:
            while True:
                try:
                    line = input(prompt_text())
                except KeyboardInterrupt:
                    output.info()
                    continue
                except EOFError:
                    output.info()
                    break
                if not self.execute(line):
                    break
        finally:
            if readline is not None:
                _save_history(readline)
        return 0


def _setup_readline(completer: Callable[[str, int], str | None]):  # noqa: ANN202 - the readline module or None
    try:
        import readline
    except ImportError:
        return None
    path = history_path()
    try:
        readline.read_history_file(str(path))
    except OSError:
        pass
    readline.set_history_length(HISTORY_LEN)
    readline.set_completer(completer)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    return readline


def _save_history(readline) -> None:  # noqa: ANN001
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(str(path))
    except OSError:
        pass


# ---------------------------------------------------------------- the fleet-facing parts


def fleet_names(fleet_dir: str | None, machine: str | None) -> Names:
    """Machines and task ids from the last fetch (no network: the prompt must stay quick)."""
    from fleetq.core.clone import Fleet

    fleet = Fleet.open(fleet_dir, machine)
    snap = fleet.snapshot(fetch=False)
    cfg = fleet.config(snap)
    machines = sorted({*cfg.machines, *(a for m in cfg.machines.values() for a in m.aliases)})
    tasks = [r.id for r in snap.all_refs([s for s in ("pending", "claimed", "needs_human", "failed")])]
    days = snap.done_days()[:1]
    tasks += [r.id for r in snap.refs(DONE, days=days)]
    return Names(machines, sorted(set(tasks)))


def banner_text(fleet_dir: str | None, machine: str | None) -> str:
    from fleetq.core.clone import Fleet
    from fleetq.fleet.view import open_view

    try:
        v = open_view(Fleet.open(fleet_dir, machine))
    except FleetqError as e:
        return output.box("", ["fleetq", f"({e})"], width=68, style="round", center=True)
    names = v.names()
    lines = [
        "fleetq · distributed agents",
        " · ".join(names) or "(no machines declared)",
        f"{v.online_count()}/{len(names)} workers online",
    ]
    if v.warning:
        lines.append("(remote unreachable: as of the last fetch)")
    return output.box("", lines, width=68, style="round", center=True)
