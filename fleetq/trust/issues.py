"""What `fleetq fsck` finds: one problem in the queue, and what ``--fix`` would do about it.

Shared by the scan (fleetq/trust/fsck.py) and the repairs (fleetq/trust/repairs.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    # the problem list's kinds (trust/checks.py: duplicate id_mismatch invalid misplaced secret dangling_dep
    # never_runs bad_config odd_entry), and what only fsck sees: ghost_claim untrusted rewritten
    kind: str
    path: str
    detail: str
    task_id: str | None = None
    fix: str = ""  # what --fix would do; empty: report only
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "task_id": self.task_id,
            "detail": self.detail,
            "fix": self.fix or None,
        }
