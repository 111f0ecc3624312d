"""The real agent CLIs (claude, gemini, codex) from npm, at the versions pinned in tests/clis/.

They are installed once into a cache directory keyed by the lock file's hash (never into the repo,
never into the real HOME): ``$FLEETQ_CLI_CACHE`` (``.ci/run`` sets it), else
``/var/tmp/fleetq-clis``. When npm cannot install them the tests that need them skip with the
reason, except where ``FLEETQ_REQUIRE_REAL_CLIS=1`` (CI): there they fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from filelock import FileLock

from support.fleets import ROOT

SPEC_DIR = ROOT / "tests" / "clis"
NAMES = ("claude", "gemini", "codex")
_failure: str | None = None


def _cache_root() -> Path:
    return Path(os.environ.get("FLEETQ_CLI_CACHE") or "/var/tmp/fleetq-clis")


def prefix() -> Path:
    """Where this lock file's CLIs are (or go): one directory per lock-file hash."""
    digest = hashlib.sha256((SPEC_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    return _cache_root() / digest


def bin_dir() -> Path:
    return prefix() / "node_modules" / ".bin"


def versions() -> dict[str, str]:
    """The pinned versions, as package.json names them (the README's agent table cites these)."""
    import json

    deps = json.loads((SPEC_DIR / "package.json").read_text())["dependencies"]
    return {
        "claude": deps["@anthropic-ai/claude-code"],
        "gemini": deps["@google/gemini-cli"],
        "codex": deps["@openai/codex"],
    }


def _install() -> str | None:
    """Install the CLIs into prefix() unless they are there; why not, or None."""
    where = prefix()
    if all((bin_dir() / n).exists() for n in NAMES) and (where / ".complete").exists():
        return None
    npm = shutil.which("npm")
    if not npm:
        return "npm is not on PATH"
    where.mkdir(parents=True, exist_ok=True)
    with FileLock(str(where) + ".lock"):
        if (where / ".complete").exists():
            return None
        for f in ("package.json", "package-lock.json"):
            shutil.copy(SPEC_DIR / f, where / f)
        env = {**os.environ, "HOME": str(where / "home"), "npm_config_cache": str(_cache_root() / "npm-cache")}
        try:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=where,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            return "npm ci timed out after 600s"
        if proc.returncode != 0:
            said = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "complete log" not in ln]
            return f"npm ci failed ({proc.returncode}): {' / '.join(said[:2]) or '(no output)'}"
        (where / ".complete").write_text("ok\n")
    return None


def require(name: str) -> Path:
    """The path of the real CLI ``name``; skip (or fail under FLEETQ_REQUIRE_REAL_CLIS=1) when it cannot be had."""
    global _failure
    if _failure is None:
        _failure = _install() or ""
    if _failure:
        reason = f"the real {name} CLI is not available: {_failure}"
        if os.environ.get("FLEETQ_REQUIRE_REAL_CLIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return bin_dir() / name


if __name__ == "__main__":  # .ci/run: install before the tests, and say so when it cannot
    import sys

    why = _install()
    print(f"real agent CLIs: {why}" if why else f"real agent CLIs in {bin_dir()}: {versions()}")
    sys.exit(1 if why else 0)
