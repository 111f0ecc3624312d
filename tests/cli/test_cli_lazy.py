"""The lazy command table in fleetq/cli/app.py must match the real commands, and `--help` must import none of them."""

from __future__ import annotations

import subprocess
import sys

import click

from fleetq.cli import app as cli


def test_static_table_matches_the_real_commands() -> None:
    """Every module imported: the table's names, modules and one-line helps are exactly the real ones."""
    real = {
        name: (module, cmd.get_short_help_str(10**6))
        for name, (module, cmd) in cli.real_commands().items()
        if not cmd.hidden
    }
    table = dict(cli.COMMANDS)
    missing = {n: real[n] for n in sorted(set(real) - set(table))}
    stale = {n: table[n] for n in sorted(set(table) - set(real))}
    changed = {n: {"table": table[n], "real": real[n]} for n in sorted(set(real) & set(table)) if real[n] != table[n]}
    assert not (missing or stale or changed), (
        "fleetq/cli/app.py COMMANDS is out of date:\n"
        + "".join(f"  add     {n!r}: {v!r},\n" for n, v in missing.items())
        + "".join(f"  remove  {n!r}: {v!r},\n" for n, v in stale.items())
        + "".join(f"  change  {n!r}: {v['table']!r} -> {v['real']!r},\n" for n, v in changed.items())
    )


def test_lazy_help_is_the_eager_help() -> None:
    """`fleetq --help` from the table reads exactly as a group with every command registered would print it."""
    eager_group = click.Group(
        "fleetq",
        params=cli.root.params,
        help=cli.root.help,
        invoke_without_command=True,
        context_settings=cli.root.context_settings,
    )
    for _name, (_module, cmd) in cli.real_commands().items():
        eager_group.add_command(cmd)
    eager = eager_group.get_help(click.Context(eager_group, info_name="fleetq", **cli.root.context_settings))
    lazy = cli.root.get_help(click.Context(cli.root, info_name="fleetq", **cli.root.context_settings))
    assert lazy == eager


def test_help_imports_no_command_module_and_a_command_loads_its_own() -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from fleetq.cli.app import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.startswith('fleetq.cli.commands.') or m in ('git', 'ruamel.yaml')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    out = subprocess.run(
        [sys.executable, "-c", probe, "validate", "--help"], capture_output=True, text=True, check=True
    ).stdout
    loaded = eval(out)  # noqa: S307 - our own repr of a list of names
    assert "fleetq.cli.commands.validate" in loaded
    assert "fleetq.cli.commands.queue" not in loaded


def test_commands_run_through_the_lazy_group(cli, fleets) -> None:  # noqa: ANN001 - fixtures
    res = cli("--fleet", fleets.first.root, "assign", "lazy one", "--set", "script=true")
    assert res.code == 0, res.err
    res = cli("--fleet", fleets.first.root, "queue", "--json")
    assert res.code == 0 and "lazy one" in res.out
    res = cli("no-such-command")
    assert res.code == 2 and "no such command" in res.err
