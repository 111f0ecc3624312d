"""Git hooks: installing fleetq's into a clone or a bare remote, and what they run.

The scripts in the product's ``hooks/`` directory are thin: they find the Python
that installed them (embedded at install time) and run ``python -m fleetq.hooks
HOOK``, which imports only the checking core (not the whole CLI), so a push waits
about a tenth of a second for the server's verdict.

A hook that is not fleetq's is never overwritten: it is kept as
``HOOK.fleetq-chained`` and run after fleetq's (with the same input), and
``uninstall`` puts it back.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fleetq.errors import FleetqError, UsageError
from fleetq.git.inspect import hooks_dir, index_tree
from fleetq.git.repo import GitRepo, init_bare
from fleetq.trust import receive, signing
from fleetq.trust.checks import diff_trees

MARK = "# fleetq-hook"
CHAINED = ".fleetq-chained"
CLIENT_HOOKS = ("pre-commit",)
SERVER_HOOKS = ("pre-receive",)
PREFIX = "fleetq: "


@dataclass
class HookState:
    name: str
    path: Path
    state: str  # fleetq | foreign | absent
    chained: Path | None = None
    python: str | None = None  # the interpreter a fleetq hook calls

    def to_json(self) -> dict[str, object]:
        return {
            "hook": self.name,
            "path": str(self.path),
            "state": self.state,
            "chained": str(self.chained) if self.chained else None,
            "python": self.python,
        }

    def describe(self) -> str:
        text = {"fleetq": "fleetq's hook", "foreign": "another hook (not fleetq's)", "absent": "no hook"}[self.state]
        if self.chained:
            text += f", then {self.chained.name}"
        if self.state == "fleetq" and self.python and not Path(self.python).exists():
            text += f" (its python {self.python} is gone: run `fleetq hooks install` again)"
        return f"{self.name}: {text}"


# -- the scripts --


def script(name: str) -> str:
    """The hook script for ``name``, with this interpreter embedded."""
    from fleetq.layout import product_root

    src = product_root() / "hooks" / name
    try:
        text = src.read_text(encoding="utf-8")
    except OSError:
        raise FleetqError(f"fleetq's {name} hook script is missing ({src}); reinstall fleetq") from None
    return text.replace("@PYTHON@", shlex.quote(sys.executable))


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return MARK.encode() in f.read(400)
    except OSError:
        return False


def _embedded_python(path: Path) -> str | None:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("PY="):
                parts = shlex.split(line[3:])
                return parts[0] if parts else None
    except OSError:
        pass
    return None


def state_of(hooks: Path, name: str) -> HookState:
    path = hooks / name
    chained = hooks / f"{name}{CHAINED}"
    exists = path.exists() or path.is_symlink()
    state = "absent" if not exists else ("fleetq" if is_ours(path) else "foreign")
    return HookState(
        name,
        path,
        state,
        chained if (chained.exists() or chained.is_symlink()) else None,
        _embedded_python(path) if state == "fleetq" else None,
    )


def install_hook(hooks: Path, name: str) -> str:
    """Put fleetq's ``name`` hook into ``hooks``, keeping (and chaining) a hook that is not fleetq's."""
    hooks.mkdir(parents=True, exist_ok=True)
    st = state_of(hooks, name)
    chained = hooks / f"{name}{CHAINED}"
    note = "installed"
    if st.state == "foreign":
        if st.chained:
            raise FleetqError(
                f"{st.path} is not fleetq's and {chained.name} already exists; move one of them aside first"
            )
        os.replace(st.path, chained)
        note = f"installed; your previous {name} hook is kept as {chained.name} and runs after fleetq's"
    elif st.state == "fleetq":
        note = "updated"
    tmp = hooks / f".{name}.fleetq-tmp"
    tmp.write_text(script(name), encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, st.path)
    return f"{name}: {note} ({st.path})"


def uninstall_hook(hooks: Path, name: str) -> str:
    """Remove fleetq's ``name`` hook only, and put back the hook it chained to."""
    st = state_of(hooks, name)
    if st.state == "foreign":
        return f"{name}: not fleetq's; left alone"
    if st.state == "absent" and not st.chained:
        return f"{name}: not installed"
    if st.state == "fleetq":
        st.path.unlink()
    if st.chained:
        os.replace(st.chained, st.path)
        return f"{name}: removed; your previous hook is back in place"
    return f"{name}: removed"


def install(repo: GitRepo, names: Iterable[str] = CLIENT_HOOKS) -> list[str]:
    return [install_hook(hooks_dir(repo), n) for n in names]


def uninstall(repo: GitRepo, names: Iterable[str] = CLIENT_HOOKS) -> list[str]:
    return [uninstall_hook(hooks_dir(repo), n) for n in names]


def status(repo: GitRepo, names: Iterable[str] = CLIENT_HOOKS) -> list[HookState]:
    return [state_of(hooks_dir(repo), n) for n in names]


def prepare_bare(path: Path) -> list[str]:
    """Make ``path`` a fleet remote: a bare repo that refuses rewrites, never auto-gcs, and runs pre-receive."""
    path = path.expanduser()
    if (path / ".git").exists():
        raise UsageError(f"{path} is a working clone; a remote is a bare repository (try a path ending in .git)")
    if path.exists() and any(path.iterdir()) and not (path / "HEAD").is_file():
        raise UsageError(f"{path} exists and is not a bare git repository")
    init_bare(path)
    repo = GitRepo(path)
    msgs = [f"{path}: bare repo, receive.denyNonFastForwards, receive.denyDeletes, gc.auto 0, receive.autogc false"]
    return msgs + install(repo, SERVER_HOOKS)


# -- what the hooks run --


def _say(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"{PREFIX}{line}", file=sys.stderr)


def run_pre_commit(root: Path) -> int:
    """Check what is staged in the clone at ``root``; 1 (blocking the commit) when something is wrong."""
    repo = GitRepo(root)
    head = repo.rev("HEAD")
    old_tree = repo.tree_of(head) if head else None
    new_tree = index_tree(repo)
    findings = receive.check_change(repo, old_tree, new_tree, head)
    if findings:
        _say(str(f) for f in findings[: receive.MAX_MESSAGES])
        _say(
            [
                f"commit blocked: {len(findings)} problem(s) in the staged files "
                "(fix them, or bypass once with git commit --no-verify)"
            ]
        )
        return 1
    if signing.policy_at(repo, old_tree).require and repo.config_get("commit.gpgsign") != "true":
        what = signing.needs_signature(repo, old_tree, new_tree, [c.path for c in diff_trees(repo, old_tree, new_tree)])
        if what:
            _say(
                [
                    f"warning: this fleet requires signed commits and {what}: sign it (git commit -S, or "
                    "git config commit.gpgsign true) or the remote and the workers will refuse it"
                ]
            )
    return 0


def run_pre_receive(git_dir: Path, lines: Iterable[str]) -> int:
    """The server's verdict on a push; 1 (refusing all of it) when any update breaks the rules."""
    msgs = receive.pre_receive(GitRepo(git_dir), lines)
    if msgs:
        _say(msgs[: receive.MAX_MESSAGES])
        more = len(msgs) - receive.MAX_MESSAGES
        _say(([f"... and {more} more"] if more > 0 else []) + [f"push rejected: {len(msgs)} problem(s)"])
        return 1
    return 0


def run(name: str, *, cwd: Path | None = None, stdin: Iterable[str] | None = None) -> int:
    """Run hook ``name`` as git would (cwd: the work tree, or the bare repo for pre-receive)."""
    where = cwd or Path.cwd()
    try:
        if name == "pre-commit":
            return run_pre_commit(where)
        if name == "pre-receive":
            return run_pre_receive(where, stdin if stdin is not None else sys.stdin)
    except FleetqError as e:
        _say([f"{name}: {e}"])
        return 1
    raise UsageError(f"no fleetq hook named {name!r} (hooks: {', '.join(CLIENT_HOOKS + SERVER_HOOKS)})")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fleetq.hooks pre-commit|pre-receive", file=sys.stderr)
        return 2
    try:
        return run(argv[0])
    except UsageError as e:
        print(f"{PREFIX}{e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a hook fails closed with one line, never a traceback
        print(f"{PREFIX}internal error in the {argv[0]} hook: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
