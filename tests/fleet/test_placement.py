"""`fleetq pick` and the placement core: requirements filter, load score ranks, round-robin without metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetq.core.config import FleetConfig, parse_machines
from fleetq.core.heartbeat import Beat, beat
from fleetq.fleet.placement import Need, Placer, load_score, weights_of
from support.fleets import Fleets
from support.workers import set_file, set_machines

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]
MACHINES = {
    "mini": {"os": "macos", "capabilities": GENERIC + ["ios_build", "xcode"], "agents": ["claude", "gemini"]},
    "tp": {
        "os": "linux",
        "capabilities": GENERIC + ["android_build", "docker"],
        "agents": ["claude"],
        "aliases": ["old-tp"],
    },
    "box": {"os": "linux", "capabilities": GENERIC, "agents": ["codex"]},
}


class _Cfg(FleetConfig):
    def __init__(self, machines: dict[str, Any], settings: dict[str, Any] | None = None) -> None:  # noqa: D107
        self.machines = parse_machines({"machines": machines})
        self.settings = {"lease": 60, "load_weights": {"cpu": 0.4, "memory": 0.3, "load": 0.3}, **(settings or {})}


def _beat(
    name: str,
    cpu: float,
    mem: float,
    load_pct: float,
    *,
    age: float = 1.0,
    running: int = 0,
    slots: int = 2,
    agents: list[str] | None = None,
) -> Beat:
    state = {
        "machine": name,
        "slots": slots,
        "agents": agents if agents is not None else ["claude", "gemini", "codex"],
        "running": [{"id": f"r{i}"} for i in range(running)],
        "load": {"cpu": cpu, "memory": mem, "load_pct": load_pct, "load1": 0.5, "cpus": 4},
    }
    return Beat(name, "0" * 40, state, age, True)


def test_score_is_the_weighted_mean_and_weights_come_from_config() -> None:
    w = weights_of(_Cfg(MACHINES))
    assert load_score({"cpu": 10, "memory": 50, "load_pct": 20}, w) == round((4 + 15 + 6) / 100, 3)
    w2 = weights_of(_Cfg(MACHINES, {"load_weights": {"cpu": 1.0, "memory": 0, "load_average": 0}}))
    assert load_score({"cpu": 10, "memory": 50, "load_pct": 20}, w2) == 0.1
    assert load_score({"cpu": 10}, w) is None


def test_ranks_by_score_explains_and_filters_requirements() -> None:
    cfg = _Cfg(MACHINES)
    beats = {"mini": _beat("mini", 80, 70, 90), "old-tp": _beat("old-tp", 10, 30, 5), "box": _beat("box", 40, 40, 40)}
    r = Placer(cfg, beats).rank(Need())
    assert [c.name for c in r.ranked] == ["tp", "box", "mini"]  # the alias's heartbeat counts for tp
    assert r.mode == "score" and "lowest load score" in r.why
    assert "0.4×10% cpu + 0.3×30% mem + 0.3×5% load" in r.ranked[0].explain(r.weights)

    ios = Placer(cfg, beats).rank(Need(type="ios_build"))
    assert [c.name for c in ios.ranked] == ["mini"]
    assert {c.name: c.blocked for c in ios.excluded} == {
        "tp": "type ios_build is not among tp's capabilities",
        "box": "type ios_build is not among box's capabilities",
    }
    docker = Placer(cfg, beats).rank(Need(requires=["docker"]))
    assert [c.name for c in docker.ranked] == ["tp"]
    # The agent must be installed there (the heartbeat's list beats machines.yaml).
    beats["old-tp"] = _beat("old-tp", 10, 30, 5, agents=["gemini"])
    claude = Placer(cfg, beats).rank(Need(type="agent_run", agent="claude"))
    assert [c.name for c in claude.ranked] == ["box", "mini"]
    assert "agent claude is not installed here" in claude.excluded[0].explain(claude.weights)
    none = Placer(cfg, beats).rank(Need(type="nosuch_type"))
    assert none.choice is None and none.mode == "none" and "no declared machine can run type nosuch_type" in none.why


def test_batch_penalty_spreads_picks_and_full_slots_count() -> None:
    cfg = _Cfg(MACHINES)
    beats = {"mini": _beat("mini", 20, 20, 20), "tp": _beat("tp", 10, 20, 20), "box": _beat("box", 60, 60, 60)}
    placer = Placer(cfg, beats)
    picks = [placer.pick().choice.name for _ in range(4)]
    assert picks == ["tp", "mini", "tp", "mini"]
    assert "already picked 2× in this batch" in placer.rank().ranked[-1].explain(placer.weights)
    busy = Placer(cfg, {**beats, "tp": _beat("tp", 10, 20, 20, running=2, slots=2)}).rank()
    assert busy.choice.name == "mini"
    assert "all its slots are busy" in next(c for c in busy.ranked if c.name == "tp").explain(busy.weights)


def test_stale_metrics_are_not_trusted_and_round_robin_cursor_persists(tmp_path: Path) -> None:
    cfg = _Cfg(MACHINES)
    stale = {n: _beat(n, 1, 1, 1, age=600) for n in ("mini", "box")}  # older than the lease
    mixed = Placer(cfg, {**stale, "tp": _beat("tp", 90, 90, 90)}).rank()
    assert mixed.mode == "score" and mixed.choice.name == "tp"  # the busy but fresh machine beats stale idle ones
    assert "offline: last heartbeat 10m ago" in mixed.ranked[1].explain(mixed.weights)

    state = tmp_path / "state"
    state.mkdir()
    live = {n: _beat(n, 1, 1, 1) for n in ("mini", "box")}
    for b in live.values():
        b.state.pop("load")  # online, but no load metrics: round-robin
    seen = []
    for _ in range(3):  # a new Placer each time: the cursor lives in the state dir
        r = Placer(cfg, {**live, "tp": _beat("tp", 1, 1, 1, age=600)}, state_dir=state).pick()
        assert r.mode == "round-robin" and "round-robin" in r.why
        seen.append(r.choice.name)
    assert seen == ["box", "mini", "box"]  # tp (offline) is never chosen: a pin to it would wait forever
    assert (state / "placement.yaml").exists()
    # With no live worker on any eligible machine there is no choice, and it says why.
    nobody = Placer(cfg, stale, state_dir=state).rank()
    assert nobody.choice is None and "no live worker on any eligible machine" in nobody.why


def test_pick_cli_over_real_heartbeats(fleets: Fleets, cli) -> None:
    set_machines(fleets.first, MACHINES)
    root = fleets.first.root
    for name, (cpu, mem, lp) in {"mini": (70, 60, 80), "tp": (5, 20, 10)}.items():
        clone = fleets.clone(name)
        beat(
            clone,
            {
                "seq": 1,
                "slots": 2,
                "agents": ["claude"],
                "running": [],
                "load": {"cpu": cpu, "memory": mem, "load_pct": lp, "load1": 1.0, "cpus": 4},
            },
        )
    res = cli("--fleet", root, "pick")
    assert res.code == 0, res.err
    assert res.out.index("tp") < res.out.index("mini") < res.out.index("box")
    assert "→ tp: lowest load score" in res.out and "no heartbeat ever" in res.out
    doc = json.loads(cli("--fleet", root, "pick", "--type", "ios_build", "--json").out)
    assert doc["choice"] == "mini" and doc["mode"] == "score"
    assert {e["machine"] for e in doc["excluded"]} == {"tp", "box"}
    batch = json.loads(cli("--fleet", root, "pick", "-n", "4", "--json").out)["batch"]
    assert batch == ["tp", "tp", "tp", "mini"]  # 0.11 + 3 × 0.25 penalty passes mini's 0.70
    res = cli("--fleet", root, "pick", "--requires", "gpu")
    assert res.code == 1 and "no machine: no declared machine can run gpu" in res.out
    set_file(fleets.first, "config/fleet.yaml", "lease: 60\nload_weights: {cpu: 0, memory: 0, load: 1}\n")
    doc = json.loads(cli("--fleet", root, "pick", "--json").out)
    assert doc["weights"] == {"cpu": 0.0, "memory": 0.0, "load": 1.0} and doc["choice"] == "tp"
