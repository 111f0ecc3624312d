"""The pull a worker makes before a task runs: ``payload.sync`` (set by ``assign --sync``, see
fleetq/fleet/remote.py ``sync_request``) copies the submitter's directory here over rsync+SSH
(docs/design.md, "Running tasks")."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fleetq.errors import FleetqError, strip_ansi
from fleetq.git.ssh import (
    DEFAULT_EXCLUDES,
    NO_ANSWER,
    REFUSED,
    Host,
    HostDown,
    SshOptions,
    ensure_master,
    human_bytes,
    parse_stats,
    remote_form,
    rsync_argv,
)
from fleetq.handlerapi import FAILED, NEEDS_HUMAN, HandlerContext, HandlerResult, home_dir, last_line
from fleetq.run.procs import run_command

# rsync's follow-on lines after the real failure: its summary, the pipe the failure broke, ssh's notices.
_AFTERMATH = re.compile(
    r"^rsync error:|connection unexpectedly closed|broken pipe|error in rsync protocol data stream|"
    r"^warning:|^\*\*|^Permanently added",
    re.I,
)


def rsync_reason(stderr: str, stdout: str = "") -> str:
    """The most telling line of a failed rsync: ssh's own error, else the first line that is not
    aftermath (``sh: rsync: not found``, ``change_dir "/x" failed: No such file or directory``), not
    the last line (``rsync error: ... (code 12)`` or ``Broken pipe``)."""
    lines = [ln.strip() for ln in strip_ansi(stderr or "").splitlines() if ln.strip()]
    ssh = [ln for ln in lines if NO_ANSWER.search(ln) or REFUSED.search(ln)]
    cause = ssh or [ln for ln in lines if not _AFTERMATH.search(ln)] or lines
    line = cause[0] if cause else last_line(stdout)
    return line if len(line) <= 200 else line[:199] + "…"


def local_form(path: str, env: dict[str, str] | None = None) -> Path:
    """``~/rel`` (a portable path) -> this machine's directory, against ``env``'s HOME."""
    home = home_dir(env or dict(os.environ))
    if path == "~":
        return home
    return home / path[2:] if path.startswith("~/") else Path(path)


def presync(ctx: HandlerContext) -> HandlerResult | None:
    """Pull ``payload.sync`` (the submitter's directory) into place before the handler runs.

    None: nothing to do, or the sync worked (the task runs next). A result: the
    sync failed and is the task's outcome (failed: the host may answer on a
    retry; needs_human: the request itself is wrong).
    """
    spec = ctx.payload.get("sync")
    if not spec:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not isinstance(spec.get("from"), str):
        return HandlerResult(NEEDS_HUMAN, error="payload.sync needs 'path' and 'from' (the submitting machine's host)")
    if spec.get("machine") == ctx.machine:
        return None  # submitted here: the code is already in place
    port = spec.get("port") if isinstance(spec.get("port"), int) else None
    host = Host(spec.get("machine"), spec["from"], port)
    dest = local_form(str(spec.get("dest") or spec["path"]), ctx.env)
    raw = spec.get("excludes")
    excludes: list[Any] = raw if isinstance(raw, list) else DEFAULT_EXCLUDES
    opts = SshOptions.from_env()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        ensure_master(opts, host)
    except (HostDown, FleetqError, OSError) as e:
        return HandlerResult(FAILED, error=f"sync before the run failed: {e}")
    argv = rsync_argv(
        opts,
        host,
        f"{host.target}:{remote_form(spec['path'])}/",
        f"{dest}/",
        excludes=[str(x) for x in excludes],
        delete=bool(spec.get("delete")),
    )
    res = run_command(
        argv,
        cwd=dest,
        env=ctx.env,
        timeout=ctx.timeout or 600,
        log_path=ctx.log_path,
        cancel=ctx.cancel,
        capture_stdout=True,
    )
    if res.exit_code != 0:
        why = rsync_reason(res.stderr_tail, res.stdout_tail) or ("timed out" if res.timed_out else "rsync failed")
        return HandlerResult(
            FAILED,
            exit_code=res.exit_code,
            duration=res.duration,
            stderr_tail=res.stderr_tail,
            error=f"sync from {host.label}:{spec['path']} failed: {why}",
        )
    stats = parse_stats(res.stdout)
    with open(ctx.log_path, "a", encoding="utf-8") as f:
        f.write(
            f"# synced {host.label}:{spec['path']} -> {dest}: {stats.files_sent} files, "
            f"{human_bytes(stats.bytes_received)} received\n"
        )
    return None
