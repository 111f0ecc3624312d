"""What every command gets: the global options, and the fleet opened lazily from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from fleetq.cli import output
from fleetq.core.clone import Fleet


@dataclass
class AppContext:
    fleet_dir: str | None = None
    machine: str | None = None
    _fleet: Fleet | None = field(default=None, repr=False)

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet.open(self.fleet_dir, self.machine)
            self._fleet.warn = output.warn  # a checkout left behind, a stale lock removed: one line on stderr
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(self._follow)
        return self._fleet

    def _follow(self) -> None:
        """After a command that fetched (whichever way), the checkout follows the queue (Fleet.follow)."""
        fleet = self._fleet
        if fleet is None or not fleet.repo.fetches:
            return
        from filelock import Timeout  # as core/clone.py: imported on use

        try:
            with fleet.lock.acquire(timeout=2):  # a worker busy in this clone moves the checkout itself
                fleet.follow()
        except Timeout:
            pass


pass_app = click.make_pass_decorator(AppContext, ensure=True)
