"""A child environment with the fake agent CLIs first on PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from support.fleets import FAKES


def fake_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A child environment: fakes first on PATH, HOME inside tmp (the real HOME is never touched)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    path = os.pathsep.join([str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_AGENT_", "GROQ_"))}
    env.update(PATH=path, HOME=str(home), FLEETQ_TASK_ID="t1", FLEETQ_MACHINE="testbox", FLEETQ_ATTEMPT="1")
    env.update(extra)
    return env
