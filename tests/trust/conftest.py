"""Fixtures of the trust tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.fleets import Fleets, guarded_fleets
from support.signers import lock_down, make_keys, sign_as


@pytest.fixture
def guarded(tmp_path: Path) -> Fleets:
    """A fleet whose origin was prepared by `prepare_bare` (the hook saw the very first push too)."""
    return guarded_fleets(tmp_path)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Real ed25519 signing keys: alice (the owner) and mallory (a stranger)."""
    return make_keys(tmp_path / "keys", "alice", "mallory")


@pytest.fixture
def signed_fleet(fleets: Fleets, keys: dict[str, Path]) -> Fleets:
    """A fleet on a remote with no hook (as GitHub would be): require_signed, alice allowed and signing."""
    sign_as(fleets.first, keys["alice"])
    lock_down(fleets.first, keys, "alice")
    return fleets
