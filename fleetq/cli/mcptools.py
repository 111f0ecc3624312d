"""The MCP tools `fleetq mcp` serves: one table row per tool, each a fleetq command and how its arguments map.

Plain data, no MCP SDK (fleetq/cli/mcpserver.py turns it into the SDK's tools), so a test can check
every row against the real click command's options. A tool runs `fleetq [--fleet F] [--machine M] CMD
... --json` (docs/design.md, "MCP server"): ``argv`` builds that list from a call's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetq.errors import UsageError

WAIT_DEFAULT = 60.0  # seconds a `wait` call blocks unless told otherwise
WAIT_MAX = 600.0  # the most: an agent's tool call should not hang for hours
CALL_LIMIT = 120.0  # any other call that has not answered by then is killed (a stuck remote)

# kinds: how an argument becomes argv
ARG = "arg"  # one positional value
ARGS = "args"  # a list of positional values
OPT = "opt"  # --flag VALUE
MULTI = "multi"  # a list: --flag V1 --flag V2 ...
CSV = "csv"  # a list: --flag V1,V2
FLAG = "flag"  # a boolean: --flag when true
SWITCH = "switch"  # a boolean choosing between two flags: (when true, when false)

_JSON_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Param:
    name: str
    help: str
    kind: str = OPT
    flag: str = ""  # the CLI option (OPT, MULTI, CSV, FLAG); SWITCH: "--on/--off"
    vtype: type = str
    required: bool = False
    maximum: float | None = None
    default: Any = None

    def schema(self) -> dict[str, Any]:
        item = {"type": _JSON_TYPE[self.vtype]}
        s: dict[str, Any] = {"type": "array", "items": item} if self.kind in (ARGS, MULTI, CSV) else dict(item)
        s["description"] = self.help
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.default is not None:
            s["default"] = self.default
        return s


@dataclass(frozen=True)
class ToolSpec:
    name: str  # the tool's name, which is also the fleetq command it runs
    description: str
    params: tuple[Param, ...] = ()
    read_only: bool = True
    destructive: bool = False
    fixed: tuple[str, ...] = field(default=())  # options always passed (before --json)

    @property
    def command(self) -> str:
        return self.name

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }


def _p(name: str, help: str, flag: str = "", **kw: Any) -> Param:
    return Param(name, help, flag=flag or ("--" + name.replace("_", "-")), **kw)


TASK_ID = Param("id", "The task id (or a unique prefix of it), as assign or queue gave it.", kind=ARG, required=True)
REPO = _p("repo", "The project repository on this machine (default: the run's repo or the task's cwd).")
NOTES = _p("notes", "Why: kept with the decision on the task.")

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "assign",
        "Queue a task on the user's fleet of machines: an agent run (a prompt for claude, gemini, codex...), "
        "a script or a test run. Use it to send work to another machine instead of doing it here: "
        "machine='auto' puts it on the least loaded machine that can run it (and picks agent and type), "
        "a machine name pins it there, no machine lets whichever capable machine is free first take it. "
        "Returns the new task as JSON (its id, state pending); follow it with wait, show or logs.",
        (
            Param(
                "description", "What to do: the agent's prompt, or the command for a script.", kind=ARG, required=True
            ),
            _p(
                "machine",
                "'auto' (least loaded capable machine), 'any' (whichever claims it first), or a machine name "
                "(hard pin; see status).",
            ),
            _p("agent", "Agent for an agent_run: claude, gemini, codex, groq, ..."),
            _p("type", "Task type: agent_run (default for prompts), run_script, test_run, ..."),
            _p("cwd", "Working directory on the machine that runs it."),
            _p("priority", "Higher runs first (default 0).", vtype=int),
            _p("prefer", "Soft preference for a machine: others may take it after a grace period."),
            _p("after", "Task ids that must be done before this one runs.", kind=MULTI),
            _p("timeout", "Kill the run after this many seconds.", vtype=float),
            _p("set", "Task fields or payload keys, each KEY=VALUE (e.g. model=claude-sonnet-4-5).", kind=MULTI),
            _p(
                "sync",
                "A directory on THIS machine that the running machine pulls first with rsync (and runs in "
                "unless cwd is given): ship the current code to another host.",
            ),
            _p("task_id", "Use this id instead of a random one.", flag="--id"),
            _p("force", "Queue it even when no machine could run it yet.", kind=FLAG, vtype=bool),
        ),
        read_only=False,
        fixed=("--yes",),  # nobody is at a terminal to confirm an auto-routed choice
    ),
    ToolSpec(
        "parallel",
        "Run one command on several machines at once, one task pinned to each: 'run the tests on all machines', "
        "'build on every platform'. Returns the task ids; then call wait with them to collect every result.",
        (
            Param("command", "The command (or, for type agent_run, the prompt).", kind=ARG, required=True),
            _p("machines", "The machines to run on (default with all: every capable one).", kind=CSV),
            _p("all", "Every declared machine that can run it (the online ones when any are).", kind=FLAG, vtype=bool),
            _p("type", "Task type (default run_script)."),
            _p("cwd", "Working directory on each machine."),
            _p("task_timeout", "Kill each run after this many seconds.", vtype=float),
            _p("attempts", "Attempts per machine (default 1).", vtype=int),
        ),
        read_only=False,
    ),
    ToolSpec(
        "queue",
        "List the fleet's tasks, newest first, with state, machine and agent; a pending task says why it "
        "waits. Use it to see what is queued, running or finished across all machines.",
        (
            _p("status", "Only tasks in this state: pending, claimed (running), done, failed, needs_human."),
            _p("machine", "Only tasks claimed by, pinned to or preferring this machine."),
            _p("limit", "At most this many tasks (default 50, 0 for all).", vtype=int),
        ),
    ),
    ToolSpec(
        "show",
        "One task in full: state, machine, attempts, result (exit code, error, output tails, reply, cost, "
        "branch), and for a pending task why each machine does not take it.",
        (TASK_ID,),
    ),
    ToolSpec(
        "wait",
        "Block until the given tasks are done, failed or need a human, or until timeout seconds pass "
        f"(default {WAIT_DEFAULT:g}, at most {WAIT_MAX:g}); returns each task's state and machine, whether it "
        "timed out, and an exit_code (0 when all succeeded). Call it again to keep waiting.",
        (
            Param("ids", "The task ids to wait for.", kind=ARGS, required=True),
            _p(
                "timeout",
                f"Seconds to wait at most (default {WAIT_DEFAULT:g}).",
                vtype=float,
                maximum=WAIT_MAX,
                default=WAIT_DEFAULT,
            ),
        ),
    ),
    ToolSpec(
        "logs",
        "The output of a task's run: live while it runs on any machine, then the final log. Use it to "
        "see what an agent or script on another machine is doing or why it failed.",
        (
            TASK_ID,
            _p("tail", "Only the last N lines.", vtype=int),
            _p("full", "From another machine: the full log from the worker over SSH.", kind=FLAG, vtype=bool),
        ),
    ),
    ToolSpec(
        "status",
        "Each machine of the fleet: online or offline, its running tasks, done/failed counts, agents, cost. "
        "Use it for 'which machines are there', 'what is running where', before pinning a task to a machine.",
    ),
    ToolSpec(
        "monitor",
        "What runs where right now: per machine, each running task, its agent, elapsed time and cost so far.",
    ),
    ToolSpec(
        "pick",
        "Rank the machines that could run a task, best first (capabilities and agents filter, CPU/memory/load "
        "score ranks): answers 'which host should run this', 'the least loaded machine'. Queues nothing.",
        (
            _p("type", "Task type it must be able to run."),
            _p("requires", "Capabilities it must have.", kind=MULTI),
            _p("agent", "Agent that must be installed there."),
            _p("count", "Place this many tasks (each pick counts against the machine for the next).", vtype=int),
        ),
    ),
    ToolSpec(
        "review",
        "What waits for the user: needs_human tasks, and agent runs whose branch awaits accept or reject.",
    ),
    ToolSpec(
        "diff",
        "The changes an isolated agent run made on its branch (fleetq/<id>): the patch, or a diffstat. "
        "Use it before accept or reject.",
        (TASK_ID, _p("stat", "A diffstat summary instead of the patch.", kind=FLAG, vtype=bool), REPO),
    ),
    ToolSpec(
        "accept",
        "Merge an agent run's branch into the branch it started from (fast-forward unless merge) and record "
        "the decision. Only when the user wants the change.",
        (
            TASK_ID,
            Param(
                "merge",
                "Always make a merge commit (default: fast-forward only).",
                kind=SWITCH,
                flag="--merge/--ff",
                vtype=bool,
            ),
            _p("into", "Merge into this branch instead."),
            REPO,
            NOTES,
        ),
        read_only=False,
        destructive=True,
    ),
    ToolSpec(
        "reject",
        "Delete an agent run's branch and record the decision. Only when the user does not want the change.",
        (TASK_ID, REPO, NOTES),
        read_only=False,
        destructive=True,
    ),
    ToolSpec(
        "reply",
        "Answer an agent that finished, failed or asked a question: queues a continuation on the machine "
        "that ran it, resuming the same conversation with the message as the next turn, on the same branch.",
        (
            TASK_ID,
            Param("message", "The next turn for the agent.", kind=ARG, required=True),
            _p("priority", "Higher runs first (default: the replied-to task's).", vtype=int),
            _p("timeout", "Kill the run after this many seconds (default: the task's).", vtype=float),
        ),
        read_only=False,
    ),
    ToolSpec(
        "cancel",
        "Cancel pending or running tasks (a running one is killed by its worker).",
        (
            Param("ids", "The task ids to cancel.", kind=ARGS, required=True),
            _p("reason", "Kept on the task."),
        ),
        read_only=False,
        destructive=True,
    ),
)

BY_NAME = {t.name: t for t in TOOLS}

INSTRUCTIONS = (
    "fleetq runs work on the user's own machines through a shared git queue: agent runs (claude, gemini, "
    "codex...), scripts and test runs. Use these tools to send work to another machine (the least loaded "
    "one: assign with machine='auto', or pick to see the ranking), to run something on all machines "
    "(parallel, then wait), to see what is running where (status, monitor, queue), to follow and answer "
    "a run (logs, show, wait, reply), and to review an agent's changes (review, diff, accept, reject). "
    "Every tool answers with the JSON of the matching `fleetq ... --json` command."
)


def _check(spec: ToolSpec, p: Param, value: Any) -> Any:
    """``value`` as ``p`` takes it, or a UsageError naming the argument."""
    listy = p.kind in (ARGS, MULTI, CSV)
    values = value if listy else [value]
    if listy and not isinstance(value, list):
        raise UsageError(f"{spec.name}: {p.name} must be a list")
    for v in values:
        ok = isinstance(v, p.vtype) and not (p.vtype is not bool and isinstance(v, bool))
        if p.vtype is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            raise UsageError(f"{spec.name}: {p.name} must be {_JSON_TYPE[p.vtype]}" + (" items" if listy else ""))
    if p.required and listy and not value:
        raise UsageError(f"{spec.name}: {p.name} needs at least one value")
    if p.maximum is not None and value > p.maximum:
        raise UsageError(f"{spec.name}: {p.name} is at most {p.maximum:g}")
    return value


def argv(spec: ToolSpec, arguments: dict[str, Any], *, fleet_dir: str | None, machine: str | None) -> list[str]:
    """The fleetq argv (after the program) for one call; a bad argument is a UsageError."""
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise UsageError(f"{spec.name}: no such argument: {', '.join(unknown)}")
    options: list[str] = []
    positional: list[str] = []
    for p in spec.params:
        value = arguments.get(p.name, p.default)
        if value is None:
            if p.required:
                raise UsageError(f"{spec.name}: {p.name} is required")
            continue
        value = _check(spec, p, value)
        if p.kind == ARG:
            positional.append(str(value))
        elif p.kind == ARGS:
            positional += [str(v) for v in value]
        elif p.kind == OPT:
            options += [p.flag, f"{value:g}" if isinstance(value, float) else str(value)]
        elif p.kind == MULTI:
            for v in value:
                options += [p.flag, str(v)]
        elif p.kind == CSV:
            options += [p.flag, ",".join(str(v) for v in value)] if value else []
        elif p.kind == FLAG:
            options += [p.flag] if value else []
        elif p.kind == SWITCH:
            on, off = p.flag.split("/")
            options.append(on if value else off)
    glob = (["--fleet", fleet_dir] if fleet_dir else []) + (["--machine", machine] if machine else [])
    # `--` ends the options: a description or message that starts with '-' stays a value
    return [*glob, spec.command, *options, *spec.fixed, "--json", "--", *positional]


def call_limit(spec: ToolSpec, arguments: dict[str, Any]) -> float:
    """How long the call may take before it is killed: wait's own timeout plus slack, else CALL_LIMIT."""
    if spec.name == "wait":
        return float(arguments.get("timeout") or WAIT_DEFAULT) + 30.0
    return CALL_LIMIT
