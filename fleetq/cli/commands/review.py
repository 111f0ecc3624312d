"""Reviewing work: `review` (what waits for a person), `diff`, `accept`, `reject` (isolated agent runs), and
`reply` (the next turn of an agent's session). diff/accept/reject take a reply chain's newest link."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.commands.queue import _details, _look, _report, _snapshot, json_option
from fleetq.cli.context import AppContext, pass_app
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import NEEDS_HUMAN
from fleetq.core.task import Task
from fleetq.review import chains
from fleetq.review import reply as replies
from fleetq.review import runs as core

repo_option = click.option(
    "--repo", metavar="PATH", help="The project repository to use here (default: the run's repo or the task's cwd)."
)
notes_option = click.option("--notes", metavar="TEXT", help="Why: kept with the decision on the task.")


def _run_row(t: Task) -> list[str]:
    s = core.stat_of(t) or {}
    return [
        t.id,
        t.state,
        t.result.get("machine") or "",
        t.result.get("agent") or t.agent or "",
        t.result.get("branch") or "",
        str(s.get("files_changed", "")),
        f"+{s.get('insertions', 0)}",
        f"-{s.get('deletions', 0)}",
        output.preview(t.title, 40),
    ]


def _newest(snap: Snapshot, task_id: str) -> Task:
    """The task, or its reply chain's newest finished link (whose head is the branch's), said on stderr."""
    t = snap.get(task_id)
    last = chains.latest(snap, t)
    if last.id != t.id:
        output.note(f"{t.id} was replied to: taking its chain's newest link, {last.id}")
    return last


@click.command()
@json_option
@pass_app
def review(app: AppContext, as_json: bool) -> None:
    """Tasks waiting for a person: needs_human, and agent runs whose branch awaits accept/reject."""
    _, snap = _snapshot(app)
    problems: list[Problem] = []
    found = core.awaiting(snap, problems)
    waiting = [t for t in found if t.state == NEEDS_HUMAN]
    runs = [t for t in found if t.state != NEEDS_HUMAN]
    if as_json:
        output.emit_json(
            {
                "tasks": [t.to_json() for t in waiting],
                "runs": [{**t.to_json(), "diffstat": core.stat_of(t)} for t in runs],
                "problems": [p.__dict__ for p in problems],
            }
        )
        return
    if not found:
        output.info("nothing waits for review")
    for t in waiting:
        output.info(f"── {t.id}  {t.type}  {t.machine_column() or '-'}  needs_human")
        output.emit_kv([(k, v) for k, v in _details(t) if k not in ("id", "state", "type")])
        output.info(f"   → fleetq resolve {t.id} done|pending|failed [--notes TEXT]")
        output.info("")
    if runs:
        output.info("Agent runs awaiting review:")
        output.emit_table(
            [_run_row(t) for t in runs], ["ID", "State", "Machine", "Agent", "Branch", "Files", "+", "-", "Title"]
        )
        output.info("   → fleetq diff ID [--stat] | fleetq accept ID [--merge] | fleetq reject ID [--notes TEXT]")
        output.info('   → fleetq reply ID "MESSAGE" continues the agent\'s session on its branch')
    _report(problems)


@click.command()
@click.argument("task_id")
@click.option("--stat", is_flag=True, help="A diffstat summary instead of the patch.")
@repo_option
@json_option
@pass_app
def diff(app: AppContext, task_id: str, stat: bool, repo: str | None, as_json: bool) -> None:
    """Show the changes an isolated agent run made on its branch."""
    fleet, snap = _snapshot(app)
    t = _newest(snap, task_id)
    text = core.diff(fleet, t, stat=stat, repo=repo)
    if as_json:
        info = core.RunInfo.of(t)
        output.emit_json(
            {
                "id": t.id,
                "branch": info.branch,
                "base": info.base,
                "head": info.head,
                **(core.stat_of(t) or {}),
                "stat": stat,
                "diff": text,
            }
        )
    else:
        output.emit_data(text)  # a patch: exact into a pipe (`| git apply`), cleaned on a terminal


@click.command()
@click.argument("task_id")
@click.option("--ff", "mode", flag_value="ff", default=True, help="Fast-forward only (default).")
@click.option("--merge", "mode", flag_value="merge", help="Always make a merge commit.")
@click.option("--into", metavar="BRANCH", help="Merge into BRANCH (default: the branch the run started from).")
@repo_option
@notes_option
@json_option
@pass_app
def accept(
    app: AppContext, task_id: str, mode: str, into: str | None, repo: str | None, notes: str | None, as_json: bool
) -> None:
    """Merge an agent run's branch into its base branch and record the decision."""
    fleet, snap = _snapshot(app)
    t = _newest(snap, task_id)
    detail = core.accept(fleet, t, mode=mode, into=into, repo=repo, notes=notes)
    if as_json:
        output.emit_json({"id": t.id, "decision": core.ACCEPTED, **detail})
    else:
        how = "fast-forwarded" if mode == "ff" else "merged"
        output.info(f"{t.id}: accepted; {detail['into']} {how} to {detail['commit'][:12]}")


@click.command()
@click.argument("task_id")
@repo_option
@notes_option
@json_option
@pass_app
def reject(app: AppContext, task_id: str, repo: str | None, notes: str | None, as_json: bool) -> None:
    """Delete an agent run's branch and record the decision."""
    fleet, snap = _snapshot(app)
    t = _newest(snap, task_id)
    detail = core.reject(fleet, t, notes=notes, repo=repo)
    if as_json:
        output.emit_json({"id": t.id, "decision": core.REJECTED, **detail})
    else:
        where = ", ".join(detail["deleted_from"]) or "nowhere (already gone)"
        output.info(f"{t.id}: rejected; {detail['branch']} deleted from {where}")


@click.command()
@click.argument("task_id")
@click.argument("message", nargs=-1, required=True)
@click.option("--priority", type=int, help="Higher runs first (default: the replied-to task's).")
@click.option("--timeout", type=float, metavar="S", help="Kill the run after S seconds (default: the task's).")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
@pass_app
def reply(
    app: AppContext, task_id: str, message: tuple[str, ...], priority: int | None, timeout: float | None, as_json: bool
) -> None:
    """Continue an agent run's session with MESSAGE: a new task on its machine and branch.

    For a done, failed or needs_human agent_run whose agent can resume a session (resume_args in
    config/agents.yaml). Prints the new task's id.
    """
    fleet, snap, beats = _look(app)
    t = replies.reply(fleet, snap, task_id, " ".join(message), beats, priority=priority, timeout=timeout)
    if as_json:
        output.emit_json(t.to_json())
    else:
        output.info(t.id)


commands = [review, diff, accept, reject, reply]
