"""Integrity and trust helpers over a fleet repo: hooks, the staged index, pushed commits,
signatures, maintenance, object sizes and the reflog (fleetq/trust and ``fleetq fsck`` use them).
"""

from __future__ import annotations

from pathlib import Path

import git
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from fleetq.errors import FleetqError
from fleetq.git.objects import commit_parents
from fleetq.git.repo import GitRepo, one_line

ZERO_SHA = "0" * 40


def hooks_dir(repo: GitRepo) -> Path:
    """Where git looks for this repo's hooks (honours core.hooksPath)."""
    out = repo.check_git("rev-parse", "--git-path", "hooks", what="find the hooks directory").strip()
    p = Path(out)
    return p if p.is_absolute() else (Path(repo.repo.working_dir or repo.git_dir) / p).resolve()


def index_tree(repo: GitRepo) -> str:
    """The staged index as a tree object (``git write-tree``; honours $GIT_INDEX_FILE)."""
    return repo.check_git("write-tree", what="read the staged files").strip()


def parents_of(repo: GitRepo, commit: str) -> list[str]:
    """A commit's parents, read from the object in-process."""
    return commit_parents(repo.repo.odb.stream(bytes.fromhex(commit)).read())


def new_commits(repo: GitRepo, new: str, old: str | None) -> list[str]:
    """Commits that ``new`` adds, oldest first: ``old..new``, or everything not yet on any ref."""
    args = ["rev-list", "--reverse", "--topo-order", new]
    args += [f"^{old}"] if old else ["--not", "--all"]
    return repo.check_git(*args, what="list the pushed commits").split()


def signature_status(repo: GitRepo, commits: list[str], signers_file: Path | None) -> dict[str, tuple[str, str]]:
    """commit -> (git's %G? code, signing key fingerprint), SSH signatures checked against ``signers_file``.

    'G' is the only good answer: 'N' unsigned, 'U' a key not in the file, 'B' bad, 'E' cannot check.
    """
    if not commits:
        return {}
    conf = ["-c", "gpg.format=ssh"]
    if signers_file is not None:
        conf += ["-c", f"gpg.ssh.allowedSignersFile={signers_file}"]
    status, out, err = repo.run_git(*conf, "log", "--no-walk=unsorted", "--format=%H %G? %GK", *commits)
    if status != 0:
        raise FleetqError(f"cannot check commit signatures: {one_line(err)}")
    found: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and len(parts[0]) == 40:
            found[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return found


def maintenance(path: Path) -> list[str]:
    """gc and a commit-graph with changed-path filters (auto-gc is off on fleet remotes); what ran."""
    try:
        r = git.Repo(str(path))
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise FleetqError(f"{path} is not a git repository") from None
    done = []
    for args in (["gc", "--quiet"], ["commit-graph", "write", "--reachable", "--changed-paths"]):
        status, _, err = r.git.execute(["git", *args], with_extended_output=True, with_exceptions=False)
        if status != 0:
            raise FleetqError(f"git {' '.join(args)} in {path}: {one_line(err)}")
        done.append(f"git {' '.join(args)}")
    return done


def blob_size(repo: GitRepo, sha: str) -> int:
    """A blob's size without reading it (so a many-MB file is refused before it is loaded)."""
    return int(repo.repo.odb.info(bytes.fromhex(sha)).size)


def reflog_subjects(repo: GitRepo, ref: str, n: int = 1) -> list[tuple[str, str]]:
    """The newest ``n`` reflog entries of ``ref`` as (sha, subject), e.g. 'fetch: forced-update'."""
    status, out, _ = repo.run_git("reflog", "show", f"-n{n}", "--format=%H %gs", ref, "--")
    if status != 0:
        return []
    return [(line[:40], line[41:]) for line in out.splitlines() if len(line) > 41]
