"""fleetq.run.procs: supervised process trees (real processes, no mocks).

Every test runs twice: with the per-worker zygote (the normal path) and with a supervisor process per
command (the fallback when the zygote cannot start). Zygote-only tests pin ``mode``.
"""

from __future__ import annotations

import logging
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

from fleetq.run import trees, zygote_client
from fleetq.run.procs import run_command, tail_text

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(autouse=True, params=["zygote", "supervisor"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(zygote_client, "ZYGOTE", request.param == "zygote")
    return request.param


zygote_only = pytest.mark.parametrize("mode", ["zygote"], indirect=True)


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
    r = run_command(
        "pwd; echo $FOO; cat",
        cwd=tmp_path,
        env=env,
        timeout=10,
        log_path=tmp_path / "log",
        shell=True,
        stdin_text="from stdin",
        capture_stdout=True,
    )
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
    monkeypatch.setattr(trees, "KILL_GRACE", 0.3)
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
        from fleetq.run.procs import run_command
        run_command({TREE!r}, cwd={str(tmp_path)!r}, env=dict(os.environ), timeout=None,
                    log_path=Path({str(tmp_path / "log")!r}), shell=True)
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
    r = run(
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; echo err-$i >&2; i=$((i+1)); done",
        tmp_path,
        shell=True,
        tail_bytes=100,
    )
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


# ---------------------------------------------------------------- the zygote, and both paths alike


def parent_of_command(tmp_path: Path) -> int:
    r = run("echo $PPID", tmp_path, shell=True)
    assert r.exit_code == 0, r
    return int(r.stdout_tail)


def run_async(cmd, tmp_path: Path, **kw) -> tuple[threading.Thread, dict]:
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(r=run(cmd, tmp_path, **kw)))
    t.start()
    return t, box


@zygote_only
def test_one_zygote_starts_every_command(tmp_path: Path) -> None:
    z = parent_of_command(tmp_path)
    assert parent_of_command(tmp_path) == z != os.getpid()
    zygote = psutil.Process(z)
    assert zygote.ppid() == os.getpid() and "-I" in zygote.cmdline()


@pytest.mark.parametrize("mode", ["supervisor"], indirect=True)
def test_fallback_runs_a_supervisor_per_command(tmp_path: Path) -> None:
    assert parent_of_command(tmp_path) != parent_of_command(tmp_path)


@zygote_only
def test_zygote_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    zygote_client.shutdown_zygote(wait=5)
    first, box = run_async("echo $PPID; sleep 0.3", tmp_path, shell=True)  # starts the zygote, ends at ~0.3 s
    time.sleep(0.1)
    r = run("sleep 0.8; echo $PPID", tmp_path, shell=True)  # still running when that thread ends
    first.join(5)
    assert box["r"].exit_code == 0 and r.exit_code == 0
    assert int(r.stdout_tail) == int(box["r"].stdout_tail) == parent_of_command(tmp_path)


def test_sigkilled_parent_takes_the_tree_down_from_a_thread(tmp_path: Path, mode: str) -> None:
    """The worker's shape: commands run from short-lived threads, and the first one has ended."""
    script = textwrap.dedent(f"""
        import os, sys, threading
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from fleetq.run import procs, zygote_client
        zygote_client.ZYGOTE = {mode == "zygote"}
        def run(cmd):
            procs.run_command(cmd, cwd={str(tmp_path)!r}, env=dict(os.environ), timeout=None,
                              log_path=Path({str(tmp_path / "log")!r}), shell=True)
        for cmd in ("echo $PPID > first", {TREE!r}):
            t = threading.Thread(target=run, args=(cmd,))
            t.start()
            t.join()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        bg, fg = wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")
        supervisor = psutil.Process(fg).ppid()
        if mode == "zygote":  # the first command's zygote: the end of its thread did not stop it
            assert supervisor == wait_for(tmp_path / "first")
        time.sleep(0.3)
        assert not gone(fg) and not gone(bg)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert all_gone([bg, fg, supervisor])
    finally:
        if parent.poll() is None:
            parent.kill()


@zygote_only
def test_a_dead_zygote_is_replaced(tmp_path: Path) -> None:
    z = parent_of_command(tmp_path)
    os.kill(z, signal.SIGKILL)
    assert all_gone([z])
    z2 = parent_of_command(tmp_path)
    assert z2 != z and parent_of_command(tmp_path) == z2


@zygote_only
def test_killing_the_zygote_mid_command_takes_the_tree_down(tmp_path: Path) -> None:
    t, box = run_async(TREE, tmp_path, shell=True, timeout=None)
    bg, fg = wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")
    os.kill(psutil.Process(fg).ppid(), signal.SIGKILL)
    t.join(10)
    r = box["r"]
    assert r.exit_code is None and not (r.timed_out or r.cancelled)
    assert all_gone([bg, fg])
    assert "exit ? after" in (tmp_path / "log").read_text()
    assert run(["true"], tmp_path).exit_code == 0  # and the next command gets a new zygote


@zygote_only
def test_shutdown_zygote_kills_what_still_runs(tmp_path: Path) -> None:
    t, box = run_async(TREE, tmp_path, shell=True, timeout=None)
    bg, fg = wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")
    zygote = psutil.Process(fg).ppid()
    zygote_client.shutdown_zygote(wait=5)
    t.join(10)
    assert box["r"].exit_code is None
    assert all_gone([bg, fg, zygote])


@zygote_only
def test_falls_back_to_supervisors_when_the_zygote_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    zygote_client.shutdown_zygote(wait=5)
    failing = tmp_path / "failing_zygote.py"
    failing.write_text("import sys; sys.exit(3)\n")
    monkeypatch.setattr(zygote_client, "ZYGOTE_PATH", failing)
    monkeypatch.setattr(zygote_client, "_retry_at", 0.0)
    with caplog.at_level(logging.WARNING, logger="fleetq.run.procs"):
        parents = [parent_of_command(tmp_path) for _ in range(2)]
    assert "cannot start the process zygote" in caplog.text
    assert "before saying hello" in caplog.text  # it did run the (failing) script
    assert parents[0] != parents[1]  # one supervisor each
    assert caplog.text.count("cannot start") == 1  # not retried for every command
    r = run(TREE, tmp_path, shell=True, timeout=0.5)
    assert r.timed_out and all_gone([wait_for(tmp_path / "bg"), wait_for(tmp_path / "fg")])


@zygote_only
def test_a_forked_child_starts_its_own_zygote(tmp_path: Path) -> None:
    z = parent_of_command(tmp_path)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = parent_of_command(tmp_path) not in (z, 0)
        except BaseException:  # noqa: BLE001
            ok = False
        os.write(wfd, b"ok" if ok else b"no")
        os._exit(0)
    os.close(wfd)
    try:
        assert os.read(rfd, 8) == b"ok"
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    assert parent_of_command(tmp_path) == z  # ours is untouched


def test_not_executable_is_126(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o644)
    r = run([str(tool)], tmp_path)
    assert r.exit_code == 126 and "Permission denied" in r.stderr_tail
    r = run_command(
        ["tool"], cwd=tmp_path, env={**os.environ, "PATH": str(tmp_path)}, timeout=10, log_path=tmp_path / "log"
    )
    assert r.exit_code == 126 and "Permission denied" in r.stderr_tail


def test_program_is_looked_up_in_the_commands_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "fleetq-test-tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = run_command(["fleetq-test-tool"], cwd=tmp_path, env=env, timeout=10, log_path=tmp_path / "log")
    assert r.exit_code == 0 and r.stdout_tail == "tool\n"
    assert run(["fleetq-test-tool"], tmp_path).exit_code == 127  # not in our PATH


def test_relative_and_default_cwd_are_the_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for cwd, want in (("sub", tmp_path / "sub"), (None, tmp_path)):
        r = run_command("pwd -P", cwd=cwd, env=dict(os.environ), timeout=10, log_path=tmp_path / "log", shell=True)
        assert r.stdout_tail == f"{want.resolve()}\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_commands_start_with_default_signal_dispositions(tmp_path: Path) -> None:
    r = run(["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"], tmp_path)
    masks = {k: int(v, 16) for k, v in (line.split(":") for line in r.stdout_tail.split("\n") if line)}
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
        assert not masks["SigIgn"] & (1 << (sig - 1)), sig
    assert masks["SigBlk"] == 0


def test_concurrent_commands_get_their_own_results(tmp_path: Path) -> None:
    runs = [
        run_async(f"read x; echo {i} $x; echo e{i} >&2; exit {i % 7}", tmp_path, shell=True, stdin_text=f"in{i}\n")
        for i in range(24)
    ]
    for i, (t, box) in enumerate(runs):
        t.join(20)
        r = box["r"]
        assert (r.exit_code, r.stdout_tail, r.stderr_tail) == (i % 7, f"{i} in{i}\n", f"e{i}\n")


def test_a_large_environment_gets_through(tmp_path: Path) -> None:
    """Far more than a socket buffer: the request to the zygote arrives in many pieces, its fds first."""
    big = {f"BIG{i}": str(i) * 100_000 for i in range(8)}
    r = run_command(
        'echo "${#BIG0} ${#BIG7}"; cat',
        cwd=tmp_path,
        env={**os.environ, **big},
        timeout=10,
        log_path=tmp_path / "log",
        shell=True,
        stdin_text="in",
    )
    assert (r.exit_code, r.stdout_tail) == (0, "100000 100000\nin")


# ---------------------------------------------------------------- what `ps` shows

RUN_DIR = ROOT / "fleetq" / "run"


def names_file(argv: list[str], name: str) -> bool:
    return any(Path(a).is_absolute() and Path(a).resolve() == (RUN_DIR / name).resolve() for a in argv)


@zygote_only
def test_the_zygotes_command_line_is_short_and_names_its_file(tmp_path: Path) -> None:
    argv = psutil.Process(parent_of_command(tmp_path)).cmdline()
    assert len("\0".join(argv)) < 1000, argv  # not the module's source
    assert "-c" not in argv and "-I" in argv and names_file(argv[:4], "zygote.py"), argv


@pytest.mark.parametrize("mode", ["supervisor"], indirect=True)
def test_the_supervisors_command_line_is_short_and_names_its_file(tmp_path: Path) -> None:
    cancel = threading.Event()
    t, box = run_async("echo $PPID > ppid; exec sleep 60", tmp_path, shell=True, timeout=None, cancel=cancel)
    try:
        argv = psutil.Process(wait_for(tmp_path / "ppid")).cmdline()
    finally:
        cancel.set()
        t.join(10)
    assert box["r"].cancelled
    assert len("\0".join(argv)) < 1000, argv
    assert "-c" not in argv[:4] and "-I" in argv[:4] and names_file(argv[:4], "supervisor.py"), argv
    assert argv[-3:] == ["/bin/sh", "-c", "echo $PPID > ppid; exec sleep 60"]
