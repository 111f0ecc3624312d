"""Property tests: the task parser and the CLI never show a traceback, whatever they are given."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.task import FIELDS
from fleetq.errors import InvalidTask
from fleetq.trust import checks
from support.fleets import Fleets

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

YAML_CHARS = list("abcxyz019 :-_.\n\t[]{}&*!|>'\"#%@`,?~=/\\") + ["id", "type", "payload", "\xe9", "\u2028", "\ufeff"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
task_like = st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=10)), values, max_size=8)


def _parse(raw: bytes) -> taskmod.Task | None:
    try:
        return taskmod.parse(raw, state="pending", path="queue/pending/x.yaml", file_id="x")
    except InvalidTask as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return None


def _use(t: taskmod.Task) -> None:
    """Every property a listing or a worker reads, and a transition's re-rendering, must work."""
    for name in (
        "id",
        "type",
        "title",
        "payload",
        "priority",
        "target",
        "prefer",
        "requires",
        "agent",
        "depends_on",
        "max_attempts",
        "attempts",
        "claim",
        "result",
        "created_at",
        "not_before",
        "timeout",
    ):
        getattr(t, name)
    t.machine_column()
    t.summary()
    t.to_json()
    body = taskmod.edit(t, {"attempts": t.attempts + 1})
    again = taskmod.parse(body, state="claimed", path="queue/claimed/x.yaml", file_id="x")
    assert again.payload == t.payload and again.type == t.type


@FUZZ
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes(raw: bytes) -> None:
    t = _parse(raw)
    if t is not None:
        _use(t)


@FUZZ
@given(st.lists(st.sampled_from(YAML_CHARS), max_size=80).map("".join))
@example("\ufeff#")  # found by a CI-like run: a BOM mid-file parsed, then its re-rendering did not
def test_parse_yaml_shaped_text(text: str) -> None:
    t = _parse(("id: x\n" + text).encode("utf-8", "surrogatepass"))
    if t is not None:
        _use(t)


@FUZZ
@given(task_like, st.booleans())
def test_parse_generated_task_data(data: dict, with_id: bool) -> None:
    if with_id:
        data["id"] = "x"
    try:
        raw = yamlio.dump_plain(data).encode()
    except Exception:  # noqa: BLE001 - data the dumper itself cannot represent is not a file anyone can write
        return
    t = _parse(raw)
    if t is not None:
        assert taskmod.validate(t.data, file_id="x") == []
        _use(t)


@FUZZ
@given(
    st.sampled_from(["queue/", "queue/pending/", "queue/done/2024-01-01/", "queue/done/", "config/", ""]),
    st.text(max_size=20),
    st.binary(max_size=200),
)
def test_check_file_on_any_path(prefix: str, name: str, raw: bytes) -> None:
    path = prefix + name
    for f in checks.check_file(path, raw):
        assert isinstance(f.reason, str) and str(f)
    try:
        states.parse_path(path)
    except states.BadPath:
        pass


# -- the command line against a real small fleet --

COMMANDS = [
    ["queue"],
    ["show"],
    ["log"],
    ["review"],
    ["failures"],
    ["assign"],
    ["resolve"],
    ["cancel"],
    ["validate"],
    ["fsck"],
    ["hooks", "status"],
    ["archive"],
    ["logs"],
    ["reap"],
]
OPTIONS = [
    "--json",
    "--status",
    "--limit",
    "--machine",
    "--id",
    "--set",
    "--priority",
    "--type",
    "--after",
    "--timeout",
    "--before",
    "--notes",
    "--reason",
    "-n",
    "--tail",
    "--agent",
    "--prefer",
    "--cwd",
    "--lease",
    "-h",
]
WORDS = [
    "../x",
    "a/b",
    "",
    "-",
    "--",
    "x=y",
    "script=true",
    "priority=high",
    "payload.x=1",
    "depends_on=nope",
    "max_attempts=0",
    "timeout=-1",
    "id=../x",
    "type=Bad Type",
    "a" * 150,
    "2024-13-45",
    "done",
    "pending",
    "all",
    "claimed",
    "0",
    "-1",
    "99999999999999999999",
    "nan",
    "1e309",
    "t",
    "\xe9\u2028",
    "config",
]
SAFE_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), max_size=12)
token = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(WORDS), SAFE_TEXT)


@pytest.fixture
def small_fleet(fleets: Fleets, cli) -> Path:
    root = fleets.first.root
    assert cli("--fleet", root, "assign", "seed task", "--id", "t", "--set", "script=true").code == 0
    return root


@FUZZ
@given(st.sampled_from(COMMANDS), st.lists(token, max_size=6))
def test_cli_arguments_never_crash(small_fleet: Path, cli, command: list[str], args: list[str]) -> None:
    res = cli("--fleet", small_fleet, *command, *args)  # an uncaught exception fails the test right here
    assert isinstance(res.code, int)
    assert "Traceback" not in res.err and "Traceback" not in res.out
    if res.code != 0:
        said = (res.err or res.out).strip()
        assert said, f"exit {res.code} with nothing said for {command + args}"
        lines = [ln for ln in res.err.splitlines() if ln.strip()]
        assert not lines or any(ln.startswith(("fleetq:", "fleetq ", "warning:")) for ln in lines), res.err
