"""A real sshd on loopback for the ssh:// rows (tests/support/sshd.py's SshServer), reachable by plain `ssh HOST`.

The client's config is the server's private ssh_config: fleetq reads it from
$FLEETQ_SSH_CONFIG; git and plain ssh get it from an `ssh` shim first on PATH
(``ssh -F CONFIG "$@"``), so nothing touches ~/.ssh and no GIT_SSH_COMMAND is set
(a user's GIT_SSH_COMMAND would switch fleetq's own connection reuse off).
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from support.sshd import SshServer  # noqa: E402 - needs pytest (the [test] extra)

HOST = "benchhost"


class SshRemote:
    def __init__(self, base: Path) -> None:
        self.server = SshServer(base)
        self.server.alias(HOST)
        shim = base / "sshbin"
        shim.mkdir()
        real = shutil.which("ssh")
        (shim / "ssh").write_text(f'#!/bin/sh\nexec {real} -F {self.server.config} "$@"\n')
        (shim / "ssh").chmod(0o755)
        self.env = {**self.server.env(), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
        os.environ.update(self.env)  # this process and every worker it starts
        self.master_dir = Path(self.server.sockets)

    def url(self, bare: str | Path) -> str:
        return f"ssh://{HOST}{Path(bare).resolve()}"

    def plain_master_command(self) -> str:
        """GIT_SSH_COMMAND for plain git that reuses one connection (a ControlMaster of its own)."""
        return f"ssh -o ControlMaster=auto -o ControlPath={self.master_dir}/plain-%C -o ControlPersist=60"

    def stop(self) -> None:
        self.server.stop()


def _set(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@contextmanager
def env(**values: str | None):
    """Set (or, for None, unset) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            _set(k, v)
        yield
    finally:
        for k, v in old.items():
            _set(k, v)
