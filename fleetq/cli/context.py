"""What every command gets: the global options, and the fleet opened lazily from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from fleetq.core.clone import Fleet


@dataclass
class AppContext:
    fleet_dir: str | None = None
    machine: str | None = None
    _fleet: Fleet | None = field(default=None, repr=False)

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet.open(self.fleet_dir, self.machine)
        return self._fleet


pass_app = click.make_pass_decorator(AppContext, ensure=True)
