"""Value types shared across the layers, with no behaviour that reaches the disk.

`PathHash` is what `repro.lock`, run-cache entries and snapshots record for a path; the
signatures, the planner and the run cache use it without importing the checkout code
(`repro.workspace`), which still re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from repro.hashing.engine import HashResult


@dataclass(frozen=True)
class PathHash:
    """What a lock file records for a path: its hash, bytes, and whether it is a folder."""

    hash: str
    size: int
    isdir: bool = False
    nfiles: int = 1

    def to_dict(self) -> dict:
        d: dict = {"hash": self.hash, "size": self.size}
        if self.isdir:
            d["isdir"] = True
            d["nfiles"] = self.nfiles
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PathHash:
        return cls(
            d["hash"], int(d.get("size", 0)), bool(d.get("isdir", False)), int(d.get("nfiles", 1))
        )

    @classmethod
    def of(cls, r: HashResult) -> PathHash:
        return cls(r.hash, r.size, r.is_dir, r.nfiles)


def tidy(value: Any) -> Any:
    """A float as people read it (12 significant digits: 0.1 + 0.2 shows as 0.3, not
    0.30000000000000004); anything else unchanged. For text output only: JSON keeps the exact
    value, and a comparison is always made on the exact value."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return float(f"{value:.12g}")
    return value
