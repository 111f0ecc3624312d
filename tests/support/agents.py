"""Test helpers shared by the fleetq test modules: a child env with the fakes first on PATH,
and the `fleetq.handlers` package when setup.py's package_dir mapping is not installed."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from support.fleets import FAKES, ROOT


def fake_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A child environment: fakes first on PATH, HOME inside tmp (the real HOME is never touched)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    path = os.pathsep.join([str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_AGENT_", "GROQ_"))}
    env.update(PATH=path, HOME=str(home), FLEETQ_TASK_ID="t1", FLEETQ_MACHINE="testbox", FLEETQ_ATTEMPT="1")
    env.update(extra)
    return env


def ensure_handlers_package() -> None:
    """Make `fleetq.handlers` importable from the source tree's handlers/ (setup.py maps it when installed)."""
    try:
        importlib.import_module("fleetq.handlers")
        return
    except ModuleNotFoundError:
        pass
    import fleetq

    spec = importlib.util.spec_from_file_location(
        "fleetq.handlers", ROOT / "handlers" / "__init__.py", submodule_search_locations=[str(ROOT / "handlers")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleetq.handlers"] = module
    spec.loader.exec_module(module)
    fleetq.handlers = module
