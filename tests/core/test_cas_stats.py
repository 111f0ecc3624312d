"""FLEETQ_STATS_FILE: a process writes cas.STATS as JSON at exit (the benchmark's conflict rate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_stats_file_is_written_at_exit_by_the_process_itself_only(tmp_path: Path) -> None:
    code = (
        "import os\nfrom fleetq.core import cas\ncas.STATS.pushes, cas.STATS.rejected = 5, 2\n"
        "pid = os.fork()\nif pid == 0:\n    cas.STATS.pushes = 99\n    raise SystemExit(0)\nos.waitpid(pid, 0)\n"
    )
    env = {**os.environ, "FLEETQ_STATS_FILE": str(tmp_path / "stats-{pid}.json")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [f] = list(tmp_path.glob("stats-*.json"))  # the forked child (same atexit) wrote nothing
    got = json.loads(f.read_text())
    assert {k: got[k] for k in ("pushes", "rejected", "fetches")} == {"pushes": 5, "rejected": 2, "fetches": 0}


def test_no_stats_file_unless_asked(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FLEETQ_STATS_FILE"}
    subprocess.run(
        [sys.executable, "-c", "from fleetq.core import cas; cas.STATS.pushes = 1"], env=env, cwd=run_dir, check=True
    )
    assert list(run_dir.iterdir()) == []
