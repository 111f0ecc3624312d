"""Task files: validation, round-trip editing, the older payload keys, paths."""

from __future__ import annotations

import pytest

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.errors import InvalidTask

HAND_WRITTEN = b"""# written by hand; this comment must survive
id: fix-login   # the id is the file name
type: run_script
title: Fix the login page
payload:
  script: make test   # inline comment
  _target_machine: mac-mini
  _preferred_machine: thinkpad
priority: 2
"""


def parse(raw: bytes, state: str = "pending", tid: str = "fix-login") -> taskmod.Task:
    return taskmod.parse(raw, state=state, path=f"queue/{state}/{tid}.yaml", file_id=tid)


def test_round_trip_keeps_comments_and_key_order() -> None:
    t = parse(HAND_WRITTEN)
    out = taskmod.edit(t, {"attempts": 1, "claim": {"machine": "m", "at": "2026-01-01T00:00:00Z", "attempt": 1}})
    text = out.decode()
    assert "# written by hand; this comment must survive" in text
    assert "make test   # inline comment" in text
    assert "# the id is the file name" in text
    keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert keys == ["id", "type", "title", "payload", "priority", "attempts", "claim"]
    again = parse(out)
    assert again.attempts == 1 and again.claim["machine"] == "m"
    # a second edit (the completion) keeps them too
    third = taskmod.edit(again, {"result": {"exit_code": 0}})
    assert b"# inline comment" in third and b"exit_code: 0" in third


def test_older_payload_keys_are_target_and_prefer() -> None:
    t = parse(HAND_WRITTEN)
    assert t.target == "mac-mini"
    assert t.prefer == "thinkpad"
    assert t.machine_column() == "→mac-mini"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"id: x\ntype: run_script\npriorty: 3\n", "unknown field 'priorty' (did you mean 'priority'?)"),
        (b"id: other\n", "does not match the file name"),
        (b"id: x\npriority: high\n", "'priority' must be an integer"),
        (b"- just\n- a list\n", "holds a mapping"),
        (b"id: x\ntype: Bad Type\n", "is not a task type name"),
        (b"id: x\nmax_attempts: 0\n", "'max_attempts' must be at least 1"),
        (b"id: [unclosed\n", "invalid YAML"),
        (b"\xff\xfeid: x\n", "not UTF-8"),
        (b"id: x\ndepends_on: [../etc]\n", "not a task id"),
    ],
)
def test_bad_files_give_one_clear_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidTask) as e:
        parse(raw, tid="x")
    assert reason in str(e.value)
    assert "queue/pending/x.yaml" in str(e.value)


def test_alias_bomb_is_refused() -> None:
    bomb = b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]\n".encode()
    with pytest.raises(yamlio.YamlError, match="alias"):
        yamlio.load_safe(bomb)


def test_oversized_file_is_refused() -> None:
    with pytest.raises(yamlio.YamlError, match="over the"):
        yamlio.load_safe(b"id: x\nt: '" + b"a" * (yamlio.MAX_BYTES + 10) + b"'\n")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".hidden", "a..b", "x" * 101, "sp ace"])
def test_path_like_ids_are_not_ids(bad: str) -> None:
    assert not states.valid_id(bad)


def test_paths_map_to_states() -> None:
    assert states.parse_path("queue/done/2026-01-02/abc.yaml") == states.TaskLocation("done", "abc", "2026-01-02")
    assert states.parse_path("queue/pending/.gitkeep") is None
    assert states.parse_path("config/machines.yaml") is None
    for bad in ("queue/running/x.yaml", "queue/pending/x.txt", "queue/pending/sub/x.yaml"):
        with pytest.raises(states.BadPath):
            states.parse_path(bad)


def test_legal_transitions() -> None:
    assert states.is_legal("pending", "claimed")
    assert not states.is_legal("done", "claimed")
    assert not states.is_legal("failed", "claimed")
    assert states.is_legal("claimed", "claimed")
