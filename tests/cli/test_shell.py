"""`fleetq shell` driven through a real pseudo-terminal (stdlib pty): banner, completion, a command, exit."""

from __future__ import annotations

import codecs
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetq.core.heartbeat import beat
from support.fleets import Fleets
from support.workers import set_machines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
PROMPT = "fleetq › "


class Terminal:
    """A child process on a pty, with expect-style reading (ANSI escapes and CRs stripped)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        self.fd = master
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.seen = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads

    def _read(self, until: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, until - time.time()))
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.seen += ANSI.sub("", self.decoder.decode(data))
        return bool(data)

    def expect(self, text: str, timeout: float = 20) -> str:
        """Wait for ``text``; returns what came before it and consumes through it."""
        end = time.time() + timeout
        while text not in self.seen:
            if time.time() > end or (not self._read(end) and self.proc.poll() is not None):
                raise AssertionError(f"did not see {text!r}; got:\n{self.seen[-3000:]}")
        before, _, self.seen = self.seen.partition(text)
        return before

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self, timeout: float = 20) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            os.close(self.fd)


@pytest.fixture
def term_env(fleets: Fleets) -> dict[str, str]:
    set_machines(fleets.first, {"alpha": {"capabilities": ["run_script"]}, "beta": {"capabilities": ["run_script"]}})
    beat(fleets.first, {"seq": 1, "running": [], "load": {"cpu": 1, "memory": 1, "load_pct": 1}})
    return {
        **os.environ,
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "FLEETQ_FLEET": str(fleets.first.root),
        "FLEETQ_MACHINE": "alpha",
        "COLUMNS": "100",
        "LINES": "40",
    }


def _session(t: Terminal) -> None:
    banner = t.expect("Type help for commands, exit to quit.")
    assert "alpha · beta" in banner and "1/2 workers online" in banner and "╭" in banner
    t.expect(PROMPT)
    t.send("sta\t")  # completes the command name
    t.expect("status ")
    t.send("--json\r")
    out = t.expect(PROMPT)
    assert '"online": 1' in out and '"machine": "beta"' in out
    t.send("exec be\t")  # completes a machine name
    t.expect("beta ")
    t.send("\x15")  # Ctrl-U: clear the line
    t.send("exec alpha echo shell-ran-$((40+2))\r")
    assert "shell-ran-42" in t.expect(PROMPT)
    t.send("nosuchcommand\r")
    assert "no such command" in t.expect(PROMPT)
    t.send("help queue\r")
    assert "List tasks, newest first." in t.expect(PROMPT)
    t.send("exit\r")


def test_shell_through_a_pty(term_env: dict[str, str], tmp_path: Path) -> None:
    t = Terminal([sys.executable, "-m", "fleetq", "shell"], term_env, tmp_path)
    try:
        _session(t)
    except BaseException:
        t.close(0)
        raise
    assert t.close() == 0
    history = Path(term_env["XDG_STATE_HOME"]) / "fleetq" / "shell_history"
    assert "status --json" in history.read_text()


def test_bare_fleetq_at_a_terminal_starts_the_shell(term_env: dict[str, str], tmp_path: Path) -> None:
    t = Terminal([sys.executable, "-m", "fleetq"], term_env, tmp_path)
    try:
        t.expect("Type help for commands, exit to quit.")
        t.expect(PROMPT)
        t.send("exit\r")
    except BaseException:
        t.close(0)
        raise
    assert t.close() == 0
    # Not at a terminal: the usual help, no prompt.
    res = subprocess.run(
        [sys.executable, "-m", "fleetq"],
        env=term_env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert "Usage: fleetq" in res.stdout and PROMPT not in res.stdout
