"""The click app: global options and lazy command registration (errors become exit codes in cli/runner.py).

Command modules load lazily: ``fleetq --help`` prints from the static table
below and imports no command module (each pulls in gitpython, ruamel.yaml, ...);
a command's module is imported only when that command runs.
tests/cli/test_cli_lazy.py checks the table against the real commands.
"""

from __future__ import annotations

import importlib
import sys

import click

from fleetq.cli import output
from fleetq.cli.runner import run

# One module per command group under fleetq/cli/commands; each exports `commands`.
COMMAND_MODULES = (
    "init",
    "assign",
    "queue",
    "resolve",
    "validate",
    "work",
    "schedule",
    "agent",
    "fleetview",
    "placement",
    "parallel",
    "skills",
    "remote",
    "shell",
    "hooks",
    "fsck",
    "review",
    "notify",
    "mcp",
)

# command name -> (module, one-line help as click shows it). A later module in
# COMMAND_MODULES wins a name, as when every module was registered eagerly.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Make a fleet clone at DIRECTORY (with no --remote, a local bare repo is its origin)."),
    "join": ("init", "Clone the fleet at URL into DIRECTORY and register this machine."),
    "assign": ("assign", "Queue a task described by DESCRIPTION; prints its id."),
    "queue": ("queue", "List tasks, newest first."),
    "show": ("queue", "Show one task (an id or a unique prefix)."),
    "log": ("queue", "The life of a task from git history: when, who, which transition."),
    "review": ("review", "Tasks waiting for a person: needs_human, and agent runs whose branch awaits accept/reject."),
    "diff": ("review", "Show the changes an isolated agent run made on its branch."),
    "accept": ("review", "Merge an agent run's branch into its base branch and record the decision."),
    "reject": ("review", "Delete an agent run's branch and record the decision."),
    "reply": ("review", "Continue an agent run's session with MESSAGE: a new task on its machine and branch."),
    "failures": ("queue", "Failed tasks with their errors and the command that re-queues each."),
    "resolve": ("resolve", "Mark a task done, re-queue it (pending), or record it failed."),
    "cancel": ("resolve", "Cancel pending or running tasks (a running one is killed by its worker)."),
    "archive": ("resolve", "Take old done/ day shards out of the tree (git history and `fleetq log` keep them)."),
    "validate": (
        "validate",
        "Check the queue and config as the fleet will see them, with your local changes; exit 1 if any is bad.",
    ),
    "work": ("work", "Run tasks from the queue on this machine."),
    "reap": (
        "work",
        "Hand orphaned claims (their machine stopped beating) back to pending, or to failed when attempts are spent.",
    ),
    "logs": ("work", "A task's output: the full log here, live output or the result's tails from any other clone."),
    "schedule": ("schedule", "Cron-style schedules that queue tasks (each fire exactly once across the fleet)."),
    "run": ("agent", "Run AGENT on PROMPT here and now (no queue); exit with the agent's exit code."),
    "test": ("agent", "Smoke-test the installed agents (or just AGENT) with a tiny prompt."),
    "status": (
        "fleetview",
        "Each machine: online/offline (heartbeat age), active tasks, done/failed counts, top agent, cost.",
    ),
    "load": (
        "fleetview",
        "CPU, memory and load average per machine, and the composite placement score (lower is better).",
    ),
    "monitor": (
        "fleetview",
        "What runs where right now: per machine, each running task, its agent, elapsed time, cost so far.",
    ),
    "pick": (
        "placement",
        "Rank the machines that may run a task: requirements filter, load score ranks, round-robin without metrics.",
    ),
    "parallel": ("parallel", "Queue COMMAND once per machine (each task pinned to its machine)."),
    "wait": (
        "parallel",
        "Block until the tasks are done, failed or need a human; one table; exit non-zero if any did not succeed.",
    ),
    "skills": ("skills", "Skills and capabilities: with no subcommand, what each machine declares."),
    "sync": ("remote", "Mirror directory PATH (default: here) to machine HOST with rsync over SSH."),
    "exec": (
        "remote",
        "Run COMMAND on machine HOST over SSH (locally for this machine); output streams; exits with its code.",
    ),
    "ssh": ("remote", "Open an SSH session to machine HOST (its target from config/machines.yaml)."),
    "shell": ("shell", "Interactive shell: a banner with the fleet, then any fleetq command at a `fleetq ›` prompt."),
    "hooks": ("hooks", "fleetq's git hooks: pre-commit in a clone, pre-receive on a self-hosted remote."),
    "fsck": ("fsck", "Check the queue for damage: duplicates, bad files, ghost claims, missing dependencies."),
    "maintenance": (
        "fsck",
        "git gc and a commit-graph with changed-path filters, on PATH, the origin (--remote) or this clone.",
    ),
    "notify": ("notify", "Notifications for tasks this machine created (config/notify.yaml)."),
    "mcp": (
        "mcp",
        "Serve fleetq to your own agent as MCP tools over stdio (`fleetq mcp install claude` registers it).",
    ),
}


def _import(module: str) -> list[click.Command]:
    """A command module's commands."""
    return list(importlib.import_module(f"fleetq.cli.commands.{module}").commands)


def real_commands() -> dict[str, tuple[str, click.Command]]:
    """Every command by importing every module (what the static table must match): name -> (module, command)."""
    found: dict[str, tuple[str, click.Command]] = {}
    for module in COMMAND_MODULES:
        for cmd in _import(module):
            found[cmd.name or ""] = (module, cmd)
    return found


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is looked up to run."""

    def _load(self, module: str) -> None:
        for cmd in _import(module):
            owner = COMMANDS.get(cmd.name or "")
            if owner is None or owner[0] == module:  # a name the table gives another module stays theirs
                self.add_command(cmd)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            entry = COMMANDS.get(cmd_name)
            if entry is not None:
                self._load(entry[0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The Commands section from the static table, importing nothing it already knows."""
        shown: dict[str, click.Command] = {n: click.Command(n, help=h) for n, (_, h) in COMMANDS.items()}
        shown.update(self.commands)  # loaded commands speak for themselves
        names = [n for n in sorted(shown) if not shown[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(n, shown[n].get_short_help_str(limit)) for n in names])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    invoke_without_command=True,
)
@click.option(
    "--fleet",
    "fleet_dir",
    metavar="DIR",
    envvar=None,
    help="Fleet clone to use (default: $FLEETQ_FLEET, the repo around you, your default).",
)
@click.option(
    "--machine",
    metavar="NAME",
    help="This machine's name (default: $FLEETQ_MACHINE, the clone's config, the host name).",
)
@click.version_option(package_name="fleetq", prog_name="fleetq")  # read on use: setup.py is its one source
@click.pass_context
def root(ctx: click.Context, fleet_dir: str | None, machine: str | None) -> None:
    """fleetq: run agents and jobs across your machines, with a git repo as the queue."""
    from fleetq.cli.context import AppContext  # gitpython and friends: loaded only when a command runs

    ctx.obj = AppContext(fleet_dir=fleet_dir, machine=machine)
    if ctx.invoked_subcommand is None:  # bare `fleetq`: the shell at a terminal, else the help
        shell = root.get_command(ctx, "shell")
        if sys.stdin.isatty() and sys.stdout.isatty() and shell is not None:
            ctx.invoke(shell)
        else:
            output.info(ctx.get_help())


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning a FleetqError into one line and its exit code."""
    return run(root, argv)


if __name__ == "__main__":
    sys.exit(main())
