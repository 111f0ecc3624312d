"""`fleetq reply ID MESSAGE`: continue a finished agent run's session with the next turn.

The agent CLIs keep their sessions on the machine that ran them, so the reply is a new
agent_run task pinned (``target``) to ``result.machine``, with the same agent, model, cwd and
push, MESSAGE as its prompt and the session to resume in ``payload.resume`` (the agent's
``resume_args``, config/agents.yaml). An isolated run's reply works on the chain's branch
``fleetq/<root>`` from the head the replied-to run left (run/isolate.py), so the branch
collects every link's commits. The links are ``payload.reply_to`` and ``payload.chain_root``
(review/chains.py). Each refusal is one line (UsageError, exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.moves import MAX_NEW_BYTES, too_big
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.submit import fresh_id
from fleetq.core.task import DEFAULT_TYPE, Task, fmt_time, now_utc, render_new, validate
from fleetq.errors import FleetqError, UsageError
from fleetq.layout import AGENTS, TRACKING
from fleetq.review import chains
from fleetq.run.agents.argv import can_resume
from fleetq.run.agents.registry import Registry, agents_from

REPLYABLE = (DONE, FAILED, NEEDS_HUMAN)
# payload keys a reply takes over from the task it answers (the same agent, in the same place)
KEPT = ("agent", "model", "cwd", "push")


def registry_at(snap: Snapshot) -> Registry:
    """The agents as the fleet's committed agents.yaml makes them (the built-ins when it does not load)."""
    try:
        return agents_from(snap.read_yaml(AGENTS))
    except FleetqError:
        return agents_from(None)


def _refuse(task: Task, why: str) -> UsageError:
    return UsageError(f"cannot reply to {task.id}: {why}")


def check(task: Task, snap: Snapshot, cfg: FleetConfig, machines_heard: Iterable[str]) -> tuple[str, str, str]:
    """(machine, agent, session) of a task that can be replied to; else the one-line refusal."""
    if task.type != DEFAULT_TYPE:
        raise _refuse(task, f"it is a {task.type} task, not an agent_run")
    if task.state in (PENDING, CLAIMED):
        raise _refuse(task, f"it is still {task.state}; reply once it has finished")
    if task.state not in REPLYABLE:
        raise _refuse(task, f"it is {task.state}")
    r = task.result
    agent = r.get("agent") or task.payload.get("agent") or task.agent
    session = r.get("session_id")
    machine = r.get("machine")
    if not isinstance(session, str) or not session.strip() or not session.isprintable():
        raise _refuse(task, f"its run recorded no session id (agent {agent or 'unknown'})")
    if not isinstance(agent, str) or not agent:
        raise _refuse(task, "its result does not say which agent ran")
    spec = registry_at(snap).get(agent)
    if spec is None:
        raise _refuse(task, f"agent {agent} is no longer in this fleet ({AGENTS})")
    if not can_resume(spec):
        raise _refuse(task, f"agent {agent} cannot resume a session (no resume_args in {AGENTS})")
    if not isinstance(machine, str) or not machine:
        raise _refuse(task, "its result does not say which machine ran it")
    if cfg.canonical(machine) is None and machine not in set(machines_heard):
        raise _refuse(task, f"machine {machine}, where its session is, is gone (not in machines.yaml, no heartbeat)")
    review = r.get("review")
    if isinstance(review, dict) and review.get("decision"):
        raise _refuse(task, f"its run was {review['decision']}; queue a new task instead")
    answered = chains.replies(snap, task.id)
    if answered:
        last = chains.latest(snap, task)
        hint = f"reply to {last.id} instead" if last.id != task.id else "wait for it to finish"
        raise _refuse(task, f"it already has a reply, {answered[-1].id} ({answered[-1].state}): {hint}")
    return cfg.canonical(machine) or machine, agent, session


def build(
    task: Task,
    message: str,
    snap: Snapshot,
    cfg: FleetConfig,
    machines_heard: Iterable[str],
    *,
    created_by: str,
    priority: int | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The reply task's data (checked), for ``task`` and MESSAGE."""
    text = message.strip()
    if not text:
        raise UsageError("give the reply a message")
    machine, agent, session = check(task, snap, cfg, machines_heard)
    payload: dict[str, Any] = {k: task.payload[k] for k in KEPT if task.payload.get(k) not in (None, "")}
    payload.update(prompt=text, agent=agent, resume=session, reply_to=task.id, chain_root=chains.chain_root(task))
    r = task.result
    if r.get("repo") and r.get("head") and r.get("base"):  # an isolated run: continue its branch
        payload.update(isolate=True, base=r["head"], chain_base=r["base"])
        if r.get("base_branch"):
            payload["base_branch"] = r["base_branch"]
    else:
        payload["isolate"] = False  # it ran in the directory itself: so does the reply
    data: dict[str, Any] = {
        "id": fresh_id(snap),
        "type": DEFAULT_TYPE,
        "title": " ".join(text.split()),
        "priority": task.priority if priority is None else priority,
        "target": machine,
        "agent": agent,
        "payload": payload,
        "created_at": fmt_time(now_utc()),
        "created_by": created_by,
    }
    if timeout is not None or task.timeout is not None:
        data["timeout"] = timeout if timeout is not None else task.timeout
    errs = validate(data)
    if errs:
        raise UsageError("; ".join(errs))
    size = len(render_new(data))
    if size > MAX_NEW_BYTES:
        raise UsageError(f"the reply is too large: {too_big(size)}")
    return data


def reply(
    fleet: Fleet,
    snap: Snapshot,
    task_id: str,
    message: str,
    machines_heard: Iterable[str],
    *,
    priority: int | None = None,
    timeout: float | None = None,
) -> Task:
    """Queue the reply to ``task_id``; the new task as the remote now holds it."""
    task = snap.get(task_id)
    data = build(
        task,
        message,
        snap,
        fleet.config(snap),
        machines_heard,
        created_by=fleet.machine,
        priority=priority,
        timeout=timeout,
    )
    transitions.create(fleet, [data], sign=transitions.signs(fleet))
    fleet.refresh_checkout()
    return Snapshot(fleet.repo, fleet.repo.rev(TRACKING)).get(data["id"])
