"""fleetq: a queue of agent and build jobs for a small fleet of machines, kept in a git repo."""

import importlib.util
import sys
from pathlib import Path


def __getattr__(name: str) -> str:
    """``fleetq.__version__``, read from the package metadata on first use (setup.py is its one source).

    Lazy because importlib.metadata costs more than the rest of ``fleetq --help``.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("fleetq")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value


def _map_source_handlers() -> None:
    """Give a checkout that is only on sys.path the tree every install has.

    setup.py maps the top-level handlers/ into the package as ``fleetq.handlers``; pip's
    installs and PEP 660 editable installs honour that, but old pip's ``pip install -e``
    (``setup.py develop``) and a bare checkout on PYTHONPATH do not. There, load it here.
    """
    src = Path(__file__).resolve().parent.parent / "handlers"
    if not (src / "__init__.py").is_file() or importlib.util.find_spec(f"{__name__}.handlers") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        f"{__name__}.handlers", src / "__init__.py", submodule_search_locations=[str(src)]
    )
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    globals()["handlers"] = module  # as the import system binds a loaded submodule


_map_source_handlers()
