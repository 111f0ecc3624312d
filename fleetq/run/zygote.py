"""The zygote: one long-lived process per worker that starts every command.

fleetq.run.zygote_client runs this file by path, ``python -S -I .../zygote.py PPID SOCK_FD GRACE``
(once per worker process, not once per command), so it must import nothing from fleetq: standard
library only, and only cheap modules. fleetq.run.zygote_client also imports it for
``send_frame``/``recv_frame``, so the wire format lives in one place; importing it has no side effects.

Commands start with posix_spawn (vfork+exec inside libc) in a new session, so a start costs about
as much as a shell's ``cmd &``: no copy of this process, no Python code between fork and exec. The
cwd is entered by the zygote itself around the spawn (it is single-threaded), and the program is
looked up in the *command's* PATH, as execvpe would.

Wire format, on a SOCK_STREAM socketpair: 4-byte big-endian length + a ``marshal`` payload (a builtin,
and both ends are the same interpreter, so the format always matches).

    worker -> zygote   ("run", rid, argv, cwd, env)   + 3 fds (stdin, stdout, stderr) as SCM_RIGHTS
                       ("term", rid)                   stop it: SIGTERM its group, SIGKILL after GRACE
    zygote -> worker   ("hello", zygote_pid)           once, when ready
                       ("crash", text)                 a bug: it takes its trees down and exits
                       ("started", rid, pid)           exec'd; pid leads its own session/group
                                                       (pid None: exec failed, an "exit" follows)
                       ("failed", rid, errno, "cwd")   nothing runs: the cwd cannot be entered
                       ("exit", rid, code)             exit status, or 128+N for signal N

The fds ride on the first byte of a request, and the zygote reads each 4-byte header on its own, so
they always arrive with the header of the request they belong to.

Guarantees (those the per-command supervisor gives):

* a command leads a new session, so ``killpg(pid)`` reaches all it started; on timeout/cancel the
  worker sends ``term`` (and SIGKILLs the group itself if that is not over in time). The pid is
  reported only after the exec, when the group exists;
* when a command exits, whatever it left in its group is SIGKILLed (nothing holds the output pipes
  open). The exited leader is looked at with ``waitid(WNOWAIT)`` first, so the still-unreaped zombie
  pins the group id while it is killed: no pid-reuse race;
* a group being stopped (``term``, or the worker gone) gets the whole grace: SIGTERM, then SIGKILL after
  GRACE, even when the leader (often ``sh``) exits at once. Its zombie is kept, pinning the group id,
  until the rest of the group is gone (seen in /proc; elsewhere the grace is waited out) or the grace
  ends; only then is the exit reported;
* when the worker dies (even by SIGKILL), every live group is stopped that way, and the zygote exits.
  The main signal is EOF on the socket (the kernel closes the worker's end however it dies, whichever
  of its threads started us); PR_SET_PDEATHSIG(SIGTERM) and a changed ``getppid()`` are back-ups.
  fleetq.run.zygote_client forks the zygote from a thread that never exits, because PDEATHSIG fires
  when the forking *thread* exits;
* if the zygote itself is killed, the worker sees EOF and SIGKILLs the groups of the commands it was
  waiting for (it knows their pids).
"""

from __future__ import annotations

import errno
import marshal
import os
import select
import signal
import socket
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing would add ~10 ms to every zygote start
    from collections.abc import Callable, Sequence
    from typing import Any

_HEAD = struct.Struct(">I")
_MAX_FRAME = 256 << 20  # sanity bound: a corrupt header must not make us allocate gigabytes
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)  # received fds are close-on-exec from the start
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# Reset to SIG_DFL in every command: exec keeps SIG_IGN, and Python ignores SIGPIPE/SIGXFSZ (subprocess
# restores those too); the others are ours or were the old supervisor's, so a command always got them
# at their default.
_RESET_SIGNALS = (
    *_STOP_SIGNALS,
    signal.SIGCHLD,
    signal.SIGPIPE,
    *([signal.SIGXFSZ] if hasattr(signal, "SIGXFSZ") else []),
)
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------- framing (shared with fleetq.run.zygote_client)


def send_frame(sock: socket.socket, obj: Any, fds: Sequence[int] = ()) -> None:
    """Send one message; ``fds`` travel with its first byte."""
    data = marshal.dumps(obj)
    buf = _HEAD.pack(len(data)) + data
    if not fds:
        sock.sendall(buf)
        return
    sent = socket.send_fds(sock, [buf], list(fds))
    if sent < len(buf):  # a signal cut the send short: the rest carries no fds
        sock.sendall(buf[sent:])


def recv_frame(sock: socket.socket, maxfds: int = 0) -> tuple[Any, list[int]] | None:
    """One message and the fds that came with it; None at EOF (or a peer that died mid-message)."""
    head, fds = b"", []
    while len(head) < _HEAD.size:
        if maxfds:
            chunk, got, _, _ = socket.recv_fds(sock, _HEAD.size - len(head), maxfds, _RECV_FLAGS)
            for fd in got:
                os.set_inheritable(fd, False)  # only the dup2s onto 0-2 may reach a command
            fds += got
        else:
            chunk = sock.recv(_HEAD.size - len(head))
        if not chunk:
            close_fds(fds)
            return None
        head += chunk
    (size,) = _HEAD.unpack(head)
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            close_fds(fds)
            return None
        body += chunk
    return marshal.loads(bytes(body)), fds


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def exit_code(status: int) -> int:
    """A wait status as a shell would show it: 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:  # noqa: BLE001 - no prctl: the socket EOF still works
        return None


# ---------------------------------------------------------------- the zygote process


class Zygote:
    def __init__(self, sock: socket.socket, ppid: int, grace: float) -> None:
        self.sock, self.ppid, self.grace = sock, ppid, grace
        self.pid = os.getpid()
        self.children: dict[int, int] = {}  # pid -> request id, until reaped
        self.ending: dict[int, float] = {}  # pid -> when its grace ends: SIGTERMed groups
        self.stopping = False
        self.prctl = _load_prctl()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)  # drained until empty
        os.set_blocking(self.wake_w, False)  # set_wakeup_fd requires it

    # -- set-up --
    def arm(self) -> None:
        for s in _STOP_SIGNALS:
            signal.signal(s, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a real handler, so SIGCHLD wakes select()
        signal.set_wakeup_fd(self.wake_w)
        if self.prctl is not None:
            self.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != self.ppid:  # the worker died before PDEATHSIG was armed
            self.stopping = True
        self.reply(("hello", self.pid))

    def _on_stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    # -- main loop --
    def loop(self) -> None:
        # Without PDEATHSIG (macOS) poll getppid() too; the socket EOF is the main signal anyway.
        idle = None if self.prctl is not None else 0.5
        sock_fd = self.sock.fileno()
        while not self.stopping:
            timeout = 0.05 if self.ending else idle  # a group in its grace is looked at often
            ready, _, _ = select.select([sock_fd, self.wake_r], [], [], timeout)
            if self.wake_r in ready:
                self._drain_wakeups()
            self.reap(reply=True)
            if os.getppid() != self.ppid:
                break
            if sock_fd in ready and not self.stopping:
                got = recv_frame(self.sock, maxfds=3)
                if got is None:
                    break  # the worker is gone
                self.handle(*got)
        self.shutdown()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def reply(self, msg: tuple[Any, ...]) -> None:
        try:
            send_frame(self.sock, msg)
        except OSError:
            self.stopping = True  # the worker is gone

    # -- starting a command --
    def handle(self, msg: Any, fds: list[int]) -> None:
        if isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "term" and not fds:
            for pid in [p for p, rid in self.children.items() if rid == msg[1]]:
                self.terminate(pid)
            return
        try:
            kind, rid, argv, cwd, env = msg
            if kind != "run" or len(fds) != 3:
                raise ValueError(kind)
        except (TypeError, ValueError):
            close_fds(fds)
            self.stopping = True  # protocol error: better to stop than to guess
            return
        try:
            self.start(rid, argv, cwd, env, fds)
        finally:
            close_fds(fds)  # our copies: the pipes must see EOF once the command's side is closed

    def start(self, rid: int, argv: list[str], cwd: str, env: dict[str, str], fds: list[int]) -> None:
        try:
            os.chdir(cwd)  # we are single-threaded: the command inherits it (posix_spawn has no chdir)
        except OSError as e:
            self.reply(("failed", rid, e.errno or 0, "cwd"))
            return
        try:
            pid = _spawn(argv, env, fds)
        except OSError as e:  # what exec would have said: on the command's stderr, as status 127/126
            msg = f"fleetq: cannot run {argv[0]!r}: {e.strerror or e}\n"
            _write(fds[2], msg.encode("utf-8", "surrogateescape"))
            self.reply(("started", rid, None))
            self.reply(("exit", rid, 127 if isinstance(e, FileNotFoundError) else 126))
            return
        finally:
            os.chdir("/")  # do not pin the task's directory (or its mount)
        self.children[pid] = rid
        self.reply(("started", rid, pid))

    # -- ending commands --
    def terminate(self, pid: int) -> None:
        """Stop a command's group: SIGTERM now, SIGKILL when the grace ends (``reap`` sees to it)."""
        self.ending.setdefault(pid, time.monotonic() + self.grace)
        _killpg(pid, signal.SIGTERM)

    def reap(self, *, reply: bool) -> None:
        now = time.monotonic()
        for pid in [p for p, until in self.ending.items() if now >= until]:
            _killpg(pid, signal.SIGKILL)  # the grace is over, the leader gone or not
        while (ended := self._next_exit(now)) is not None:
            pid, status = ended
            self.ending.pop(pid, None)
            rid = self.children.pop(pid, None)
            if rid is not None and reply:
                self.reply(("exit", rid, exit_code(status)))

    def _next_exit(self, now: float) -> tuple[int, int] | None:
        """Reap one exited child (not one in its grace) after SIGKILLing what it left in its group."""
        try:
            if not hasattr(os, "waitid"):
                pid, status = os.waitpid(-1, os.WNOHANG)  # no waitid (macOS): kill right after reaping
                if not pid:
                    return None
                _killpg(pid, signal.SIGKILL)
                return pid, status
            peek = os.WEXITED | os.WNOHANG | os.WNOWAIT
            # ours first, one by one: a leader kept in its grace (its group still cleaning up) hides no other
            exited = (p for p in self.children if os.waitid(os.P_PID, p, peek))
            found = next((p for p in exited if not (now < self.ending.get(p, now) and group_alive(p))), None)
            if found is None:  # anything else (the start-up probe), unless it is one in its grace
                info = os.waitid(os.P_ALL, 0, peek)
                if info is None or info.si_pid in self.children:
                    return None
                found = info.si_pid
            _killpg(found, signal.SIGKILL)  # the unreaped zombie still pins the group id
            return os.waitpid(found, 0)
        except ChildProcessError:
            return None

    def shutdown(self) -> None:
        """The worker is gone: stop every live tree (SIGTERM, SIGKILL after the grace), exit."""
        for pid in self.children:
            self.terminate(pid)
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            select.select([self.wake_r], [], [], 0.05)
            self._drain_wakeups()
            self.reap(reply=False)
        for pid in self.children:
            _killpg(pid, signal.SIGKILL)
        os._exit(0)


def group_alive(pgid: int) -> bool:
    """Whether a live process other than the leader ``pgid`` is in its group. Read from /proc, since the
    leader's zombie pins the group (``killpg(pgid, 0)`` cannot tell); without /proc, yes (the grace is
    waited out). fleetq/run/supervisor.py loads it from this file (both run standalone)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if name.isdigit() and name != str(pgid):
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[-1].split()  # after "pid (comm)": state ppid pgrp ...
            except OSError:
                continue  # gone meanwhile
            if len(fields) > 2 and fields[2] == b"%d" % pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


def _spawn(argv: list[str], env: dict[str, str], fds: list[int]) -> int:
    """posix_spawn (vfork+exec in libc: no copy of our memory, no Python in the child) in a new session.

    Returns once the command has exec'd, so its process group exists when the worker learns the pid.
    Exec errors come back as OSError, as they would from execvpe. All our own fds are close-on-exec.
    """
    return os.posix_spawn(
        _which(argv[0], env),
        argv,
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)],
        setsigdef=_RESET_SIGNALS,
        setsid=True,
    )


def _which(name: str, env: dict[str, str]) -> str:
    """The program execvpe(name, argv, env) would run: PATH is the command's, not ours (posix_spawnp's)."""
    if os.path.dirname(name):
        return name  # relative to the cwd we just entered, as for execvpe
    denied = None
    for d in os.get_exec_path(env):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
        if denied is None and os.path.exists(path):
            denied = path  # execvpe keeps looking, then reports EACCES rather than ENOENT
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _write(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass


def _can_spawn() -> bool:
    """posix_spawn with setsid here (glibc >= 2.26, macOS >= 10.15)? Probed with a program that does not exist."""
    try:
        os.posix_spawn("/nonexistent/fleetq-probe", ["probe"], {}, setsid=True)
    except (AttributeError, NotImplementedError):
        return False
    except OSError:
        return True
    return True  # it spawned something after all: reaped by the loop like any child


def main(argv: list[str]) -> None:
    ppid, sock_fd, grace = int(argv[1]), int(argv[2]), float(argv[3])
    if not _can_spawn():
        sys.exit("fleetq zygote: no posix_spawn with setsid here")  # the worker falls back to supervisors
    sock = socket.socket(fileno=sock_fd)
    sock.set_inheritable(False)
    zygote = Zygote(sock, ppid, grace)
    try:
        zygote.arm()
        zygote.loop()
    except BaseException as e:  # noqa: BLE001 - our stderr is /dev/null: tell the worker, then end as if it were gone
        zygote.reply(("crash", f"{type(e).__name__}: {e}"))
        zygote.shutdown()


if __name__ == "__main__":
    main(sys.argv)
