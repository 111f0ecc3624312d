"""`queue` reads no done shard's files, yet a dependency that is done must not cost a walk of the whole
history (`Context.was_done`, a `git log`) per listing: it is looked up by name in the shards first."""

from __future__ import annotations

from fleetq.core import transitions
from fleetq.core.cas import Plan, transact
from fleetq.trust import reach
from support.workers import tasks


def test_queue_finds_a_done_dependency_without_a_history_walk(fleets, cli, monkeypatch) -> None:  # noqa: ANN001
    f = fleets.first
    a, b = tasks(2, "x")
    a["id"], b["id"] = "aaaa1", "bbbb1"
    b["depends_on"] = ["aaaa1"]
    transitions.create(f, [a, b])

    def plan(snap):  # noqa: ANN001, ANN202
        ref = snap.locate("aaaa1")[0]
        p = Plan(subject="done")
        p.changes[ref.loc.path] = None
        p.changes["queue/done/2026-01-01/aaaa1.yaml"] = snap.repo.read_blob(ref.blob)
        p.trailers += [("Fleetq-Task", "aaaa1"), ("Fleetq-Transition", "pending->done")]
        return p

    transact(f, plan)
    calls = []
    real = reach.Context.was_done
    monkeypatch.setattr(reach.Context, "was_done", lambda self, t: calls.append(t) or real(self, t))
    res = cli("--fleet", f.root, "queue")
    assert res.code == 0, res.err
    assert "depends on" not in res.out + res.err
    assert calls == []
