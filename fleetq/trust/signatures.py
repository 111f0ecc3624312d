"""Whether commits carry a good SSH signature by an allowed key (git's ``%G?``, checked by ssh-keygen).

The signers are a committed ``config/allowed_signers`` blob (copied to a temp file git
can read) or a file a machine owner pinned (``file:PATH``). A commit's verdict is
cached per signers: commits and blobs never change.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from fleetq.git.inspect import signature_status
from fleetq.git.repo import GitRepo
from fleetq.layout import SIGNERS

CODES = {
    "N": "not signed",
    "U": f"signed by a key that is not in {SIGNERS}",
    "B": "signed with a bad signature",
    "E": "signed, but the signature cannot be checked (is ssh-keygen installed?)",
    "X": "signed with an expired signature",
    "Y": "signed by an expired key",
    "R": "signed by a revoked key",
}
_TMP: dict[str, Path] = {}
_TMP_LOCK = threading.Lock()
_CODES: dict[tuple[str, str], str] = {}  # (commit, signers) -> %G?; commits and blobs never change


def signers_file(repo: GitRepo, signers: str) -> Path:
    """A file git can read for ``signers``: the pinned path, or a temp copy of the committed blob."""
    if signers.startswith("file:"):
        return Path(signers[5:])
    with _TMP_LOCK:
        hit = _TMP.get(signers)
        if hit is None or not hit.exists():
            if "dir" not in _TMP:
                _TMP["dir"] = Path(tempfile.mkdtemp(prefix="fleetq-signers-"))
                atexit.register(shutil.rmtree, _TMP["dir"], True)
            hit = _TMP["dir"] / signers
            hit.write_bytes(repo.read_blob(signers))
            _TMP[signers] = hit
    return hit


def verify_commits(repo: GitRepo, items: list[tuple[str, str | None]]) -> dict[str, str]:
    """commit -> why its signature is not good enough, for each (commit, signers) that fails."""
    bad: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for commit, signers in items:
        if signers is None:
            bad[commit] = f"unverifiable: there is no {SIGNERS} in the fleet repo"
        else:
            groups.setdefault(signers, []).append(commit)
    for signers, commits in groups.items():
        path = signers_file(repo, signers)
        if not path.is_file():
            bad.update({c: f"unverifiable: the pinned signers file {path} does not exist" for c in commits})
            continue
        ckey = signers if not signers.startswith("file:") else f"{signers}@{path.stat().st_mtime}"
        todo = [c for c in commits if (c, ckey) not in _CODES]
        for c, (code, _key) in signature_status(repo, todo, path).items():
            _CODES[(c, ckey)] = code
        for c in commits:
            code = _CODES.get((c, ckey), "E")
            if code != "G":
                bad[c] = CODES.get(code, f"signature status {code}")
    return bad
