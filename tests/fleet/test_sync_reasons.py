"""The line a failed rsync is reported by: the cause, not its last line (end to end: tests/fleet/test_ssh.py)."""

from __future__ import annotations

import pytest

from fleetq.run.presync import rsync_reason

# rsync 3.2.7's stderr, as it fails (the last line is what the one-line error used to carry).
SSH_REFUSED = (
    "ssh: connect to host 127.0.0.1 port 22: Connection refused\n"
    "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
    "rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n"
)
NO_REMOTE_RSYNC = (
    "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\n"
    "sh: 1: rsync: not found\n"
    "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
    "rsync error: remote command not found (code 127) at io.c(232) [sender=3.2.7]\n"
)
NO_SOURCE = (
    'rsync: [sender] change_dir "/home/me/proj" failed: No such file or directory (2)\n'
    "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1874)\n"
    "rsync: [Receiver] write error: Broken pipe (32)\n"
)


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (SSH_REFUSED, "ssh: connect to host 127.0.0.1 port 22: Connection refused"),
        (NO_REMOTE_RSYNC, "sh: 1: rsync: not found"),
        (NO_SOURCE, 'rsync: [sender] change_dir "/home/me/proj" failed: No such file or directory (2)'),
        (
            "rsync error: timeout in data send/receive (code 30)\n",
            "rsync error: timeout in data send/receive (code 30)",
        ),
        ("", ""),
    ],
)
def test_the_telling_line(stderr: str, reason: str) -> None:
    assert rsync_reason(stderr) == reason
