"""Project repositories for isolated-run and review tests, and what 'undisturbed' means for one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from support.fleets import git


def make_project(path: Path) -> Path:
    """A real project repo on main with two commits' worth of files."""
    (path / "src").mkdir(parents=True)
    (path / "a.txt").write_text("one\ntwo\nthree\n")
    (path / "src" / "b.py").write_text("print(1)\n")
    (path / "keep.md").write_text("keep\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


def fingerprint(repo: Path) -> dict[str, str]:
    """Every file of the checkout (untracked too), the index, HEAD and main: what 'not disturbed' means."""
    out = {}
    for p in sorted(repo.rglob("*")):
        if p.is_file() and ".git" not in p.relative_to(repo).parts:
            out[str(p.relative_to(repo))] = hashlib.sha1(p.read_bytes()).hexdigest()
    out[".git/index"] = hashlib.sha1((repo / ".git" / "index").read_bytes()).hexdigest()
    out["HEAD"] = (repo / ".git" / "HEAD").read_text()
    out["main"] = git(repo, "rev-parse", "main")
    out["status"] = git(repo, "status", "--porcelain")
    return out


def files_in(repo: Path, ref: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", ref).split()
    return {n: git(repo, "show", f"{ref}:{n}") for n in names}
