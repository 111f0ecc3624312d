"""Running claimed tasks (docs/design.md, "Running tasks").

Each claimed task runs in its own thread, driving its handler (a supervised
process tree). Its result goes to the journal first and is reported by the
next pass. A task the fleet's signing rule forbids (docs/design.md, "Trust")
is not run: it goes to needs_human. A usage-limited run makes the task wait for
the agent's reset, and this worker leaves that agent alone until then.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading

from fleetq.core import transitions
from fleetq.core.states import FAILED, NEEDS_HUMAN
from fleetq.core.task import Task, fmt_time, now_utc, parse_time
from fleetq.errors import FleetqError
from fleetq.handlerapi import HandlerContext, HandlerResult
from fleetq.layout import TRACKING
from fleetq.run import handlers as handlers_loader
from fleetq.run.agents.limits import limit_wait as agent_limit_wait
from fleetq.run.presync import presync
from fleetq.run.redact import redact_result
from fleetq.trust import signing
from fleetq.worker.state import Run, WorkerState

log = logging.getLogger("fleetq.worker.runner")
LIMITED = "limited.yaml"  # in the state dir


class Runner:
    """Starts task threads and records their results in the worker's journal."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker
        # agent -> until when it is usage-limited (seen here); on disk, so `work --once` keeps it
        self.limited: dict[str, dt.datetime] = worker.recall_times(LIMITED)

    def take(self, claimed: list[Task]) -> None:
        """Run what a pass claimed, or refuse what must not run. Main thread only."""
        for t in claimed:
            why = self.untrusted(t)
            if why:
                self.refuse(t, why)
            else:
                self.start(t)

    def untrusted(self, task: Task) -> str | None:
        """Why the fleet's signing rule forbids running ``task`` (None: it may run). Main thread only."""
        repo = self.worker.fleet.repo
        head = repo.rev(TRACKING)
        return signing.verify_task(repo, head, task) if head else None

    def refuse(self, task: Task, why: str) -> None:
        """A claimed task that must not run goes to needs_human with the reason (reported next pass)."""
        log.error("not running %s: %s", task.id, why)
        attempt = task.claim.get("attempt") or task.attempts
        self.worker.journal.record(transitions.Completion(task.id, attempt, NEEDS_HUMAN, {"error": why}))
        self.worker.wake.set()

    def start(self, task: Task) -> None:
        w = self.worker
        run = Run(task=task, attempt=task.claim.get("attempt") or task.attempts)
        with w.lock:
            w.running[task.id] = run
        run.thread = threading.Thread(target=self._execute, args=(run,), name=f"task-{task.id}", daemon=True)
        run.thread.start()
        log.info("running %s (%s, attempt %d)", task.id, task.type, run.attempt)

    def _execute(self, run: Run) -> None:
        w = self.worker
        fleet = w.fleet
        t = run.task
        env = {
            **os.environ,
            "FLEETQ_TASK_ID": t.id,
            "FLEETQ_MACHINE": fleet.machine,
            "FLEETQ_ATTEMPT": str(run.attempt),
            "FLEETQ_FLEET": str(fleet.root),
        }
        log_path = w.logs_dir / f"{t.id}.log"
        res: HandlerResult
        try:
            try:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(f"=== {t.id} attempt {run.attempt} on {fleet.machine} at {now_utc():%Y-%m-%dT%H:%M:%SZ}\n")
            except OSError as e:  # a full disk: the run's own log writes say so in its result
                log.warning("%s: cannot write its log header: %s", t.id, e)
            module = handlers_loader.load_handler(t.type, w.head_dir)
            ctx = HandlerContext(
                task_id=t.id,
                task=t.data,
                payload=dict(t.payload),
                machine=fleet.machine,
                attempt=run.attempt,
                fleet_dir=fleet.root,
                log_path=log_path,
                env=env,
                agents=w.agents,
                cancel=run.cancel,
                timeout=t.timeout,
            )
            res = presync(ctx) or module.run(ctx)  # payload.sync: pull the code first
            if not isinstance(res, HandlerResult):
                raise TypeError(f"handler returned {type(res).__name__}, not HandlerResult")
        except FleetqError as e:
            res = HandlerResult(NEEDS_HUMAN, error=str(e))
        except Exception as e:  # noqa: BLE001 - a handler crash must never kill the worker
            res = HandlerResult(NEEDS_HUMAN, error=f"handler crashed: {type(e).__name__}: {e}")
        if run.handing_back:
            return  # the loop hands it back; its result does not count
        if run.cancel.is_set() and res.outcome != NEEDS_HUMAN:
            res.outcome = FAILED
            res.error = res.error or f"cancelled ({run.why or 'stopped'})"
        retry = None
        if res.outcome == FAILED and not run.cancel.is_set():
            retry = float(w.setting("retry_backoff") or 30)
            if res.extra.get("usage_limit"):
                self.limit_wait(t, res)
        c = transitions.Completion(t.id, run.attempt, res.outcome, redact_result(res.to_dict(), w.cfg), retry)
        w.journal.record(c)
        with w.lock:
            w.running.pop(t.id, None)
        log.info("finished %s: %s%s", t.id, res.outcome, f" ({res.error})" if res.error else "")
        w.wake.set()

    # -- usage limits --
    def limit_wait(self, t: Task, res: HandlerResult) -> None:
        """A usage-limited run: the task waits for the reset (``result.wait_until``, read by
        complete_plan), and this worker claims nothing else for that agent until then."""
        w = self.worker
        now = now_utc()
        wait = agent_limit_wait(
            parse_time(res.extra.get("usage_limit_reset")),
            t.result,
            now=now,
            backoff=float(w.setting("usage_limit_backoff") or 900),
            max_waits=int(w.setting("usage_limit_max_waits") or 10),
        )
        if wait is None:
            log.warning("%s hit a usage limit %s times in a row: failing it", t.id, w.setting("usage_limit_max_waits"))
            return
        until, waits = wait
        res.extra.update(wait_until=fmt_time(until), limit_waits=waits)
        agent = res.extra.get("agent")
        if agent:
            with w.lock:
                self.limited[str(agent)] = max(until, self.limited.get(str(agent), until))
                w.keep_times(LIMITED, self.limited)
        log.info("%s: usage limit (agent %s) until %s", t.id, agent or "?", fmt_time(until))

    def usable_agents(self) -> set[str]:
        """Installed agents minus those this worker saw hit a usage limit that has not reset yet."""
        now = now_utc()
        with self.worker.lock:
            over = [n for n, until in self.limited.items() if until <= now]
            for name in over:
                del self.limited[name]
            if over:
                self.worker.keep_times(LIMITED, self.limited)
            return self.worker.installed - set(self.limited)
