"""The per-command supervisor: the fallback when the zygote (fleetq/run/zygote.py) cannot start.

fleetq.run.trees runs this file by path, ``python -S -I .../supervisor.py PPID STATUS_FD GRACE CMD...``,
once per command, so it must import nothing from fleetq: standard library only, and small (on a stop it
loads ``group_alive`` from zygote.py next to it, itself standalone). It:

* becomes a session leader (``setsid``), so the command and all it starts share its process group;
* asks for PR_SET_PDEATHSIG(SIGTERM) on Linux and polls ``getppid()`` everywhere, so the worker's death
  (even by SIGKILL) ends it;
* runs the command, reports its exit status (128+N for signal N; 127/126 when it cannot be run) as one
  line on the private pipe STATUS_FD;
* on SIGTERM/SIGHUP/SIGINT (timeout, cancel, the worker gone) SIGTERMs its group and waits up to GRACE
  seconds for the whole group, not only the command: a ``sh`` that exits at once must not cut its
  children's grace short;
* always ends by SIGKILLing its group: the command's leftovers, and itself.

Importing it has no side effects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing would slow every supervisor start
    from types import FrameType


class _Term(Exception):
    """Raised in the main thread by the stop signal while it waits for the command."""


class _State:
    def __init__(self) -> None:
        self.term = False  # a stop signal arrived (or the parent was already gone)
        self.waiting = False  # the main thread is in waitpid: interrupt it

    def on_term(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.term:
            self.term = True
            if self.waiting:
                raise _Term()


def _arm_pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - no prctl: watch_parent still notices
        pass


def _watch_parent(ppid: int) -> None:
    while True:
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.5)


def _report(sfd: int, rc: int) -> None:
    try:
        os.write(sfd, f"{rc}\n".encode())
    except OSError:
        pass


def _end() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGKILL)  # the leftovers of the command, and this supervisor
    os._exit(0)


def _group_alive() -> bool:
    """Whether a live process other than this one is in our group (fleetq/run/zygote.py's ``group_alive``).

    Loaded from the file next to this one, and only when a stop needs it: both files run standalone.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from zygote import group_alive  # type: ignore[import-not-found]

    return bool(group_alive(os.getpid()))


def _code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(argv: list[str]) -> None:
    ppid, sfd, grace = int(argv[1]), int(argv[2]), float(argv[3])
    cmd = argv[4:]
    os.set_inheritable(sfd, False)
    state = _State()
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, state.on_term)
    _arm_pdeathsig()
    if os.getppid() != ppid:  # the parent died before PDEATHSIG was armed
        state.term = True
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (start_new_session=True)

    child = None
    if not state.term:
        try:
            child = subprocess.Popen(cmd)
        except OSError as e:
            sys.stderr.write(f"fleetq: cannot run {cmd[0]!r}: {e.strerror or e}\n")
            sys.stderr.flush()
            _report(sfd, 127 if isinstance(e, FileNotFoundError) else 126)
            _end()
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    try:
        state.waiting = True
        if state.term or child is None:
            raise _Term()
        _, status = os.waitpid(child.pid, 0)
        state.waiting = False
        _report(sfd, _code(status))
        _end()
    except _Term:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            try:
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    child = None  # reaped: only the rest of the group is waited for now
            except ChildProcessError:
                child = None
        if child is None and not _group_alive():
            break
        time.sleep(0.05)
    _end()


if __name__ == "__main__":
    main(sys.argv)
