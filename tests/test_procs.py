"""fleetq.procs: supervised process trees (real processes, no mocks)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from fleetq import procs
from fleetq.procs import run_command, tail_text

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
TREE = "sleep 60 & echo $! > bg; echo $$ > fg; exec sleep 60"  # a background grandchild + the foreground


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def wait_for(path: Path, within: float = 5.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def run(cmd, tmp_path: Path, **kw):
    kw.setdefault("timeout", 10)
    return run_command(cmd, cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log", **kw)


def test_runs_and_logs(tmp_path: Path) -> None:
    r = run(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path)
    assert (r.exit_code, r.timed_out, r.cancelled) == (3, False, False)
    assert r.stdout_tail == "out\n" and r.stderr_tail == "err\n" and r.stdout == ""
    log = (tmp_path / "log").read_text()
    assert "out" in log and "err" in log and "exit 3" in log


def test_shell_cwd_env_stdin(tmp_path: Path) -> None:
    env = {**os.environ, "FOO": "bar"}
    r = run_command("pwd; echo $FOO; cat", cwd=tmp_path, env=env, timeout=10, log_path=tmp_path / "log",
                    shell=True, stdin_text="from stdin", capture_stdout=True)
    assert r.exit_code == 0
    assert r.stdout == f"{tmp_path.resolve()}\nbar\nfrom stdin"


def test_missing_command_is_127(tmp_path: Path) -> None:
    r = run(["no-such-command-fleetq"], tmp_path)
    assert r.exit_code == 127 and "no-such-command-fleetq" in r.stderr_tail


def test_signal_exit_is_128_plus(tmp_path: Path) -> None:
    assert run("kill -TERM $$", tmp_path, shell=True).exit_code == 128 + signal.SIGTERM


def test_no_timeout_means_no_limit(tmp_path: Path) -> None:
    assert run(["sleep", "0.2"], tmp_path, timeout=None).exit_code == 0


def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run(TREE, tmp_path, shell=True, timeout=0.5)
    assert r.timed_out and not r.cancelled and r.exit_code is None
    assert time.monotonic() - t0 < 3
    assert all_gone([wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")])
    assert "timed out" in (tmp_path / "log").read_text()


def test_cancel_kills_the_whole_tree(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    r = run(TREE, tmp_path, shell=True, timeout=None, cancel=cancel)
    assert r.cancelled and not r.timed_out and r.exit_code is None
    assert time.monotonic() - t0 < 3
    assert all_gone([wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")])


def test_sigterm_ignorer_gets_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "KILL_GRACE", 0.3)
    t0 = time.monotonic()
    r = run("trap '' TERM; echo $$ > fg; while :; do sleep 0.1; done", tmp_path, shell=True, timeout=0.3)
    assert r.timed_out
    assert time.monotonic() - t0 < 2.5
    assert all_gone([wait_for(tmp_path / "fg")])


def test_leftover_background_processes_are_reaped(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run("sleep 60 & echo $! > bg; echo started", tmp_path, shell=True)
    assert r.exit_code == 0 and r.stdout_tail == "started\n"
    assert time.monotonic() - t0 < 3  # the background sleep did not hold the pipes open
    assert all_gone([wait_for(tmp_path / "bg")])


def test_sigkilled_parent_takes_the_tree_down(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from fleetq.procs import run_command
        run_command({TREE!r}, cwd={str(tmp_path)!r}, env=dict(os.environ), timeout=None,
                    log_path=Path({str(tmp_path / 'log')!r}), shell=True)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        bg, fg = wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")
        supervisor = psutil.Process(fg).ppid()
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert all_gone([bg, fg, supervisor])
    finally:
        if parent.poll() is None:
            parent.kill()


def test_tails_are_bounded_and_log_is_full(tmp_path: Path) -> None:
    r = run("i=0; while [ $i -lt 2000 ]; do echo line-$i; echo err-$i >&2; i=$((i+1)); done", tmp_path,
            shell=True, tail_bytes=100)
    assert r.exit_code == 0
    assert len(r.stdout_tail.encode()) <= 100 and r.stdout_tail.endswith("line-1999\n")
    assert len(r.stderr_tail.encode()) <= 100 and r.stderr_tail.endswith("err-1999\n")
    log = (tmp_path / "log").read_text()
    assert "line-0\n" in log and "err-1999" in log


def test_big_output_on_both_streams_does_not_deadlock(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('e' * 3_000_000); sys.stdout.write('o' * 5_000_000)"
    r = run([sys.executable, "-c", code], tmp_path, timeout=20, capture_stdout=True)
    assert r.exit_code == 0 and not r.timed_out
    assert len(r.stdout) == 5_000_000 and len(r.stderr_tail) == 4000


def test_missing_cwd_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        run_command(["true"], cwd=tmp_path / "nope", env=dict(os.environ), timeout=5, log_path=tmp_path / "log")


def test_tail_text_never_splits_a_character() -> None:
    data = "aé€😀".encode() * 10
    for n in range(1, 30):
        assert "\ufffd" not in tail_text(data, n)
    assert tail_text(b"abc", 10) == "abc" and tail_text(b"abc", 0) == ""
