"""What a person's checkout of the fleet repo holds that the remote's main (as last fetched) does not."""

from __future__ import annotations

from collections.abc import Iterable

from fleetq.git.repo import GitRepo
from fleetq.layout import TRACKING


def local_changes(repo: GitRepo, under: Iterable[str]) -> dict[str, bytes | None]:
    """Files below ``under`` that the checkout changed since it last agreed with the remote: uncommitted,
    untracked (not ignored), or committed and not pushed yet; path -> the bytes on disk (None: deleted).

    A file the person never touched is not here, even when the checkout is behind: the fetched
    head's version of it is the one that counts."""
    dirs = list(under)
    head, tracking = repo.rev("HEAD"), repo.rev(TRACKING)
    base = head
    if head and tracking:
        status, out, _ = repo.run_git("merge-base", head, tracking)
        base = out.strip() if status == 0 and out.strip() else head
    paths: set[str] = set()
    if base:  # the working tree against the last common commit: staged, unstaged and unpushed edits alike
        status, out, _ = repo.run_git("diff", "--name-only", "-z", "--no-renames", base, "--", *dirs)
        if status == 0:
            paths.update(p for p in out.split("\0") if p)
    for d in dirs:
        paths.update(repo.untracked(d))
    found: dict[str, bytes | None] = {}
    for rel in sorted(paths):
        f = repo.path / rel
        found[rel] = f.read_bytes() if f.is_file() else None
    return found
