"""Fixtures of the trust tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetq.fleet import initfleet
from fleetq.trust import hooks
from support.fleets import Fleets


@pytest.fixture
def guarded(tmp_path: Path) -> Fleets:
    """A fleet whose origin was prepared by `prepare_bare` (the hook saw the very first push too)."""
    bare = tmp_path / "remote.git"
    hooks.prepare_bare(bare)
    fleet, _ = initfleet.init(tmp_path / "fleet", str(bare), machine="alpha")
    return Fleets(tmp_path, fleet, str(bare))
