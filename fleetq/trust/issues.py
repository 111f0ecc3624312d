"""What `fleetq fsck` finds: one problem in the queue, and what ``--fix`` would do about it.

Shared by the scan (fleetq/trust/fsck.py) and the repairs (fleetq/trust/repairs.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    kind: str  # duplicate id_mismatch invalid misplaced ghost_claim dangling_dep bad_config untrusted rewritten
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
