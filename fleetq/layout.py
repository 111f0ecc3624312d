"""Every path in a fleet repo and every ref and config name fleetq uses, in one place.

The fleet repo's layout is its protocol (docs/design.md, "The repo is the queue"): a
task's directory is its state, config lives in ``config/``, custom task types in
``handlers/``, and each machine's heartbeat in a ref of its own. Nothing here imports
anything of fleetq's, so every layer may use it.
"""

from __future__ import annotations

from pathlib import Path

# -- the fleet repo's tree --
QUEUE = "queue"  # queue/<state>/<id>.yaml; done tasks in queue/done/<YYYY-MM-DD>/
ARCHIVED = "archived"  # archived/<YYYY-MM-DD>.ids: the ids each archived done day shard held (core/archindex.py)
MARKER = ".fleetq"  # committed at the root of every fleet repo by `fleetq init`
CONFIG_DIR = "config"
HANDLERS_DIR = "handlers"  # a fleet's own task types: handlers/<type>.py
MACHINES = "config/machines.yaml"
SETTINGS = "config/fleet.yaml"
AGENTS = "config/agents.yaml"
SKILLS = "config/skills.yaml"
SCHEDULES = "config/schedules.yaml"
NOTIFY = "config/notify.yaml"
SIGNERS = "config/allowed_signers"  # git's gpg.ssh.allowedSignersFile format
# Everything that decides what runs or where (settings, signers, machines, agents, skills, schedules, the
# notifier, handler code): under require_signed a change to any file below these must be signed.
PROTECTED_DIRS = (CONFIG_DIR, HANDLERS_DIR)

# -- refs --
BRANCH = "main"
REMOTE = "origin"
MAIN_REF = f"refs/heads/{BRANCH}"
TRACKING = f"refs/remotes/{REMOTE}/{BRANCH}"
MACHINE_REFS = "refs/fleetq/machines"  # refs/fleetq/machines/<name>: one heartbeat commit each, force-pushed
LIVE_REFS = "refs/fleetq/live"  # refs/fleetq/live/<name>: a worker's running tasks' recent output, force-pushed
REVIEW_REFS = "refs/fleetq/review"  # refs/fleetq/review/<branch>: a pushed run branch, fetched for review
RUN_BRANCH_PREFIX = "fleetq/"  # an isolated agent run's branch in the project repo: fleetq/<task id>

# -- git config keys of a clone --
MACHINE_KEY = "fleetq.machine"
LOCAL_REQUIRE = "fleetq.requireSigned"
LOCAL_SIGNERS = "fleetq.allowedSignersFile"


def product_root() -> Path:
    """Where the shipped config/, hooks/ and handlers/ live: the source tree, or the installed skeleton."""
    here = Path(__file__).resolve().parent
    if (here.parent / "config" / "fleet.yaml").exists():
        return here.parent
    return here / "skeleton"
