"""What `repro run` reports: each stage's outcome and the run's result (the `--json`
document), and two small helpers the run's parts share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from repro.enums import NOT_DONE, Outcome
from repro.pipeline.signature import StageInputs
from repro.pipeline.status import (
    Reason,
)
from repro.workspace import (
    PathHash,
)


@dataclass
class StageOutcome:
    name: str
    status: Outcome
    signature: str | None = None
    seconds: float = 0.0
    exit_code: int | None = None
    reasons: list[Reason] = field(default_factory=list)
    message: str | None = None
    stdout: str | None = None  # object hash of the kept stdout
    stderr: str | None = None
    outs: dict[str, PathHash] = field(default_factory=dict)
    inputs: StageInputs | None = None
    verified: bool | None = None
    mismatches: list[str] = field(default_factory=list)
    executor: str | None = None  # the executor that ran the command, and where it ran
    worker: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # `observe:` outcomes (checks.py)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "status": self.status, "signature": self.signature}
        if self.verified is not None:
            d["verified"] = self.verified
            d["mismatches"] = self.mismatches
        if self.message:
            d["message"] = self.message
        if self.checks:
            d["checks"] = self.checks
        return d


@dataclass
class RunResult:
    run_id: str
    stages: list[StageOutcome]
    started: float
    ended: float
    dry_run: bool = False
    snapshot: str | None = None
    data: list[Any] = field(default_factory=list)  # repro.data.DataChange: tracked data taken

    @property
    def ok(self) -> bool:
        return all(s.status not in NOT_DONE for s in self.stages) and all(
            s.verified is not False for s in self.stages
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "snapshot": self.snapshot,
            "run_id": self.run_id,
            "stages": [s.to_dict() for s in self.stages],
            "data": [c.to_dict() for c in self.data],
        }
        if self.dry_run:
            d["dry_run"] = True
        return d


def _warn(text: str) -> None:
    import sys

    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


def _unprotect(path: str) -> None:
    """Give a persisted output its own writable inodes (it may share them with the cache)."""
    paths = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    )
    for p in paths:
        st = os.stat(p)
        if st.st_nlink > 1 or not st.st_mode & 0o200:
            import shutil  # only for a persisted output that shares the cache's inodes

            tmp = p + ".repro-unprotect"
            shutil.copyfile(p, tmp)
            os.chmod(tmp, (st.st_mode & 0o777) | 0o200)
            os.replace(tmp, p)
