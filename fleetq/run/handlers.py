"""Find the handler module for a task type.

A fleet repo's ``handlers/<type>.py`` comes first, so a fleet can add a type or
replace a built-in one with no wiring; otherwise the built-in
``fleetq.handlers.<type>``. Custom files are loaded by path under a unique module
name and cached by (mtime, size): an edited handler is picked up on the next task.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

from fleetq.errors import FleetqError

_TYPE = re.compile(r"[a-z][a-z0-9_]*")
_cache: dict[Path, tuple[tuple[int, int], ModuleType]] = {}
_lock = threading.Lock()


def _unknown(task_type: str) -> FleetqError:
    return FleetqError(
        f"unknown task type '{task_type}' (no built-in handler and no handlers/{task_type}.py in the fleet repo)"
    )


def custom_path(fleet_dir: Path | None, task_type: str) -> Path | None:
    if fleet_dir is None:
        return None
    p = Path(fleet_dir) / "handlers" / f"{task_type}.py"
    return p if p.is_file() else None


def load_handler(task_type: str, fleet_dir: Path | None) -> ModuleType:
    """The module whose ``run(ctx)`` runs tasks of ``task_type``; FleetqError when there is none."""
    if not isinstance(task_type, str) or not _TYPE.fullmatch(task_type):
        raise _unknown(str(task_type))
    path = custom_path(fleet_dir, task_type)
    module = _load_file(path, task_type) if path else _builtin(task_type)
    if module is None:
        raise _unknown(task_type)
    if not callable(getattr(module, "run", None)):
        where = f"handlers/{task_type}.py" if path else f"fleetq.handlers.{task_type}"
        raise FleetqError(f"{where} has no run(ctx) function")
    return module


def _builtin(task_type: str) -> ModuleType | None:
    name = f"fleetq.handlers.{task_type}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == "fleetq.handlers":
            raise FleetqError("fleetq's built-in handlers (fleetq.handlers) are not installed: reinstall fleetq") from e
        if e.name == name:
            return None
        raise


def _load_file(path: Path, task_type: str) -> ModuleType:
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    key = path.resolve()
    with _lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
        digest = hashlib.sha1(f"{key}:{stamp}".encode()).hexdigest()[:12]
        name = f"fleetq_custom_handlers.{task_type}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FleetqError(f"handlers/{task_type}.py cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # a person's code: report it, never crash the worker
            sys.modules.pop(name, None)
            raise FleetqError(f"handlers/{task_type}.py failed to load: {type(e).__name__}: {e}") from e
        if hit:
            sys.modules.pop(hit[1].__name__, None)
        _cache[key] = (stamp, module)
        return module


def available_types(fleet_dir: Path | None) -> list[str]:
    """Every task type this install can run: the built-ins plus the fleet repo's handlers/*.py."""
    names: set[str] = set()
    try:
        pkg = importlib.import_module("fleetq.handlers")
        names |= {m.name for m in pkgutil.iter_modules(pkg.__path__) if _TYPE.fullmatch(m.name)}
    except ModuleNotFoundError:
        pass
    if fleet_dir is not None and (Path(fleet_dir) / "handlers").is_dir():
        names |= {p.stem for p in (Path(fleet_dir) / "handlers").glob("*.py") if _TYPE.fullmatch(p.stem)}
    return sorted(names)
