"""Every way fleetq gets installed gives the same package tree, and each runs a task end to end.

`pip install .`, `pip install -e .` (PEP 660), a built wheel, and the legacy `setup.py develop`
path that old pip (before 21.3) takes for `-e`. Each goes into its own fresh venv, built from a
copy of the source tree (the checkout is never written to) with no network: build
dependencies and fleetq's own come from the test venv, put on the new venv's path by a .pth file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from support.fleets import ROOT

pytestmark = pytest.mark.timeout(240)

MODES = ("pip-install", "pip-editable", "wheel", "setup-develop")
# What an installed fleetq must be able to import and read, whatever the install mode.
PROBE = """
import importlib, importlib.metadata as md, json, pathlib, fleetq
from fleetq.layout import product_root
import fleetq.handlers, fleetq.handlers.run_script, fleetq.handlerapi, fleetq.hooks
root = product_root()
print(json.dumps({
    "version": fleetq.__version__, "metadata": md.version("fleetq"),
    "handlers": sorted(p.stem for p in pathlib.Path(fleetq.handlers.__file__).parent.glob("*.py")),
    "config": sorted(p.name for p in (root / "config").iterdir() if p.suffix == ".yaml"),
    "hooks": sorted(p.name for p in (root / "hooks").iterdir() if p.name.startswith("pre-")),
}))
"""


def _source_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # fleetq's dependencies and the build backend, from the test venv (after the new venv's own site).
    Path(purelib, "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py


def _pip(py: Path, *args: str, cwd: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _install(mode: str, src: Path, tmp: Path) -> Path:
    py = _venv(tmp / f"venv-{mode}")
    if mode == "pip-install":
        _pip(py, ".", cwd=src)
    elif mode == "pip-editable":
        _pip(py, "-e", ".", cwd=src)
    elif mode == "wheel":
        out = tmp / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
            cwd=src,
            check=True,
            capture_output=True,
        )
        [whl] = out.glob("fleetq-*.whl")
        _pip(py, str(whl), cwd=tmp)
    else:  # what pip < 21.3 runs for `pip install -e .`
        subprocess.run([str(py), "setup.py", "-q", "develop", "--no-deps"], cwd=src, check=True, capture_output=True)
    return py


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _source_copy(tmp_path_factory.mktemp("src"))


@pytest.mark.parametrize("mode", MODES)
def test_every_install_gives_the_same_tree_and_runs_a_task(mode: str, source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    py = _install(mode, src, tmp_path)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "home" / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / "config"),
    }
    env.pop("PYTHONPATH", None)
    probe = subprocess.run([str(py), "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["version"] == seen["metadata"] != "0+unknown"
    assert seen["handlers"] == sorted(p.stem for p in (ROOT / "handlers").glob("*.py"))
    assert seen["config"] == sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
    assert seen["hooks"] == ["pre-commit", "pre-receive"]

    fleetq = [str(py.parent / "fleetq")]
    fleet = tmp_path / "fleet"

    def run(*args: str) -> str:
        proc = subprocess.run([*fleetq, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"fleetq {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    run("init", str(fleet))
    run("--fleet", str(fleet), "hooks", "install")  # the hook scripts ship with every install
    tid = run("--fleet", str(fleet), "assign", "say hi", "--set", "script=echo hi from $FLEETQ_MACHINE").strip()
    run("--fleet", str(fleet), "work", "--burst")
    listing = json.loads(run("--fleet", str(fleet), "queue", "--json"))
    assert [(t["id"], t["state"]) for t in listing["tasks"]] == [(tid, "done")], listing
    assert not listing["problems"]
    hook = subprocess.run([str(py), "-m", "fleetq.hooks"], env=env, capture_output=True, text=True)
    assert hook.returncode == 2 and "usage: python -m fleetq.hooks" in hook.stderr
